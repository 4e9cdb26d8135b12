"""Accounts, passwords, login sessions and their REST routes."""
