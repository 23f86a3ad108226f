"""The error that stops a run before training when the image folder has problems."""

from studio.errors import StudioError


class InvalidImageFolderError(StudioError, ValueError):
    """An image folder with unusable files (or no usable image at all).

    The message is the whole report, so a person sees every problem at once
    rather than one per run.

    Args:
        report: the `ImageFolderReport`.
        hint: str, what to do about it.
    """

    def __init__(self, report, hint=""):
        super().__init__(report.format() + (f"\n{hint}" if hint else ""))
        self.report = report
        self.hint = hint
