"""The one exception type user-facing commands turn into a one-line message and exit 2."""


class StudyError(Exception):
    """Bad input or an unusable artefact: the CLI prints `studylib: <message>` and exits 2."""
