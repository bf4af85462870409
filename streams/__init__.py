"""The Faust application: its command line and (later) its stream processors."""
