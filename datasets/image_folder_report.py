"""The report of what in an image folder can be trained on, and why the rest cannot."""


class ImageFolderReport:
    """Which files of a folder are usable images, which are not and why.

    Args:
        folder: str, the folder that was checked.
        usable: sequence of file names (in the folder) of usable images.
        problems: sequence of `(file name, reason)` pairs: image files that
            cannot be used, or caption files that make their image unusable.
        ignored: sequence of file names that are neither images nor
            captions (or hidden files), left out without complaint.
    """

    def __init__(self, folder, usable, problems=(), ignored=()):
        self.folder = str(folder)
        self.usable = tuple(usable)
        self.problems = tuple((str(name), str(reason)) for name, reason in problems)
        self.ignored = tuple(ignored)

    @property
    def ok(self):
        """True when every image is usable and there is at least one."""
        return bool(self.usable) and not self.problems

    def format(self):
        """The report as text, one problem per line: `  file: reason`."""
        lines = [
            f"Image folder {self.folder}: {_count(len(self.usable), 'usable image')}, "
            f"{_count(len(self.problems), 'problem')}"
            + (f", {_count(len(self.ignored), 'ignored file')}" if self.ignored else "")
            + "."
        ]
        if self.problems:
            lines.append("Files that cannot be used:")
            width = max(len(name) for name, _ in self.problems)
            lines += [f"  {name.ljust(width)}  {reason}" for name, reason in self.problems]
        if self.ignored:
            lines.append("Ignored (not images or captions): " + ", ".join(self.ignored))
        return "\n".join(lines)

    __str__ = format

    def __repr__(self):
        return (
            f"ImageFolderReport(folder={self.folder!r}, usable={len(self.usable)}, "
            f"problems={len(self.problems)}, ignored={len(self.ignored)})"
        )

    def get_config(self):
        return {
            "folder": self.folder,
            "usable": list(self.usable),
            "problems": [list(problem) for problem in self.problems],
            "ignored": list(self.ignored),
        }


def _count(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"
