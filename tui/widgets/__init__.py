"""The cockpit's screens and widgets (textual). Data comes down as frozen views; facts go up as messages."""
