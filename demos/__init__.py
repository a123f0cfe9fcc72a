"""The top of the stack: what people touch (the pygame play window, the kiosk, the RL agent
demo) and the `echo-infinity` command line (demos/cli.py) that drives every package."""
