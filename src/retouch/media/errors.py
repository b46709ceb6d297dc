"""The one error type media raises: its message says what went wrong and what to do."""


class MediaError(Exception):
    """An input could not be fetched or decoded. str(error) is a user-facing reason
    (without the input's name: the caller prefixes `image_urls[i]`)."""

    def __init__(self, reason: str, *, code: str = "invalid_input_image") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
