"""Rooms, messages and live delivery: the heart of Greenroom."""
