"""The cockpit's widgets (textual): tables, header, footer, event log, timeline, step detail, styles. Data comes
down as frozen views; facts go up as messages."""
