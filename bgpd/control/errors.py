"""Errors of the control API."""

from __future__ import annotations


class ControlError(Exception):
    """Base class for control API failures."""


class RequestError(ControlError):
    """A request the server cannot serve; the message goes back to the client as is."""


class ControlSocketInUse(ControlError):
    """Another process answers on the control socket path, so this daemon must not take it."""
