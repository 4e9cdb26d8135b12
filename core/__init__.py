"""The platform under chat, auth and presence: settings, errors, web helpers, clock, storage, backplane, limits."""
