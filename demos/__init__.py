"""What people touch: the pygame play window (and later the kiosk and the RL agent demo)."""
