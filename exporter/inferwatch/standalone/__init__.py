"""The standalone exporter behind ``inferwatch-exporter``: GPU, process and exporter-health
metrics, each collector in its own module under ``collectors/``.

Nothing here is imported by ``import inferwatch``; the model server never pays for it.

>>> from inferwatch.standalone.scrape import registered_collectors
>>> {"gpu", "process"} <= set(registered_collectors())
True
"""
