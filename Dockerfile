# The inferwatch image: the standalone exporter (default command), and the demo model,
# traffic generator and page printer the compose stack runs (compose/docker-compose.yml).
#
#   docker build -t inferwatch:0.1.0 .
#   docker run --rm -p 127.0.0.1:9400:9400 inferwatch:0.1.0 inferwatch-exporter --no-collector.gpu
FROM python:3.12.6-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
# demo: scikit-learn for the demo model; auth: bcrypt for the exporter's basic auth.
RUN pip install ".[demo,auth]" && rm -rf /src

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin inferwatch
USER 10001
WORKDIR /tmp

EXPOSE 9400
CMD ["inferwatch-exporter", "--web.listen-address=:9400"]
