"""The browser pages Retouch serves: the playground and the operator console."""
