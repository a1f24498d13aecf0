"""`serkit deploy`: bundle the agent, a model and a board config, install them on a Raspberry Pi over SSH."""
