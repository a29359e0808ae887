"""The cockpit's screens (textual): the main screen of each mode and every dialog. Data comes down as frozen
views and a `ScreenContext`; what the app must do goes up as messages."""
