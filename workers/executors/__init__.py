"""Executors of the built-in step types, one module each (see ``bcce.steptypes``)."""
