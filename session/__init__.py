"""The headless session: the view model, the feed, recordings, replay, the report, redaction.

Everything a cockpit session computes, records and reads back, with no terminal: it never imports
textual or rich (an import-linter contract and tests/test_import_hygiene.py hold it to that), so
`cockpit replay --report`, `cockpit status` and the engine's callers run in a pipe or a CI log.
"""
