"""Results for people: ``tables`` (CSV and JSON, means with intervals), ``plots`` (PNG figures) and
``markdown`` (``report.md`` and the answer sentence)."""
