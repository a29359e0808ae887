"""Recordings (docs/recording.md): the format's records, the keyed snapshot form and its diffs, the writer,
the line index and the reader. Import from the module that holds a name; this package re-exports nothing."""
