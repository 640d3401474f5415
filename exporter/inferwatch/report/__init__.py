"""Seeing it without Grafana: drift reports and the live status page, as static HTML.

- :mod:`~inferwatch.report.model`: what a page shows, as data (and reports from a data file);
- :mod:`~inferwatch.report.live`: the same from a running model's state and recent history;
- :mod:`~inferwatch.report.flags`: the alert conditions, with the generator config's thresholds;
- :mod:`~inferwatch.report.svg`: charts as inline SVG; :mod:`~inferwatch.report.page`: HTML;
- :mod:`~inferwatch.report.status`: the pages a server answers at ``/``;
- :mod:`~inferwatch.report.cli`: ``inferwatch report``.
"""
