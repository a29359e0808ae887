"""`cockpit replay FILE --report`: a recording as a Markdown account of the change window
(`session.report.document.report`). Import from the module that holds a name; this package re-exports nothing."""
