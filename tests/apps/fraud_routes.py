"""The fraud-scoring routes that the FastAPI apps of the middleware tests share.

``GET /score`` scores with an instrumented ``fraud`` classifier and answers the request id
the app itself reads from its headers (what an app keeps to report ground truth later);
``GET /outcome?id=...&label=...`` reports that ground truth; ``/health`` is no model's route.
"""

from __future__ import annotations

from fastapi import FastAPI, Request

import inferwatch


class FraudModel:
    classes_ = ("legit", "fraud")

    def predict_proba(self, rows: list[list[float]]) -> list[list[float]]:
        return [[0.25, 0.75] for _ in rows]


def add_fraud_routes(app: FastAPI) -> None:
    """Add ``/score``, ``/outcome`` and ``/health`` to `app`, scoring with a ``fraud`` model
    instrumented under version 1."""
    model = inferwatch.instrument(FraudModel(), name="fraud", version="1")

    @app.get("/score")
    async def score(request: Request) -> dict:
        model.predict_proba([[1.0]])
        return {"request_id": request.headers.get("x-request-id")}

    @app.get("/outcome")
    async def outcome(id: str, label: str) -> dict:
        inferwatch.monitor("fraud", "1").record_outcome(id, label)
        return {}

    @app.get("/health")
    async def health() -> dict:
        return {}
