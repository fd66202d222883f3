"""DIMSE failure responses shared by the query and retrieve services."""

from __future__ import annotations

from pydicom import Dataset

# Error Comment is LO, at most 64 characters (PS3.5 6.2, PS3.7 C.4.2).
ERROR_COMMENT_LENGTH = 64


class RequestFailure(Exception):
    """A request that gets a failure status; the comment names the rule without patient data."""

    def __init__(self, status: int, comment: str, tag: int | None = None):
        super().__init__(comment)
        self.status = status
        self.comment = comment
        self.tag = tag

    def response(self) -> Dataset:
        response = Dataset()
        response.Status = self.status
        response.ErrorComment = self.comment[:ERROR_COMMENT_LENGTH]
        if self.tag is not None:
            response.OffendingElement = [self.tag]
        return response
