"""Who is online: presence rules, the sweeper greenlet and the user-status routes."""
