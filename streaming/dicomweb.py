"""The PACS over DICOMweb: QIDO-RS search, WADO-RS retrieve, STOW-RS store.

A thin layer over ``dicomweb-client`` built from :class:`engine.settings.PacsSettings`
that turns HTTP failures into vcfscreen's typed errors: a 5xx, a timeout or a refused
connection is transient (retry later), a 4xx on a study is permanent for that study.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from io import BytesIO

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from engine.errors import StudyError, TransientError
from engine.logs import study_ref
from engine.settings import PacsSettings


class PacsRequestError(StudyError):
    """The PACS refused a request for a study (4xx): retrying will not help."""

    code = "pacs_refused"


class DicomWeb:
    def __init__(self, settings: PacsSettings):
        session = requests.Session()
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else ""
            session.auth = (settings.username, password)
        self._client = DICOMwebClient(url=settings.dicomweb_url, session=session, timeout=settings.timeout_s)
        self._session = session
        self._timeout = settings.timeout_s
        self._url = settings.dicomweb_url.rstrip("/")

    def _call(self, what: str, uid: str | None, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            message = f"{what} of {study_ref(uid)} at {self._url}: HTTP {status}"
            if status >= 500 or status in (408, 429):
                raise TransientError(message) from None
            raise PacsRequestError(message) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"{what} of {study_ref(uid)}: PACS at {self._url} unreachable ({type(exc).__name__})") from None

    def store(self, datasets: Sequence[Dataset]) -> Dataset:
        """STOW-RS; returns the PACS's response dataset (ReferencedSOPSequence...)."""
        uid = datasets[0].StudyInstanceUID if datasets else None
        response = self._call("store", uid, self._client.store_instances, datasets=list(datasets))
        failed = response.get("FailedSOPSequence") or []
        if failed:
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise PacsRequestError(
                f"store of {study_ref(uid)}: the PACS refused {len(failed)} of {len(datasets)} "
                f"instances (DICOM failure reasons {', '.join(reasons)})"
            )
        return response

    def retrieve_study(self, study_instance_uid: str) -> list[Dataset]:
        """WADO-RS: every instance of the study, pixel data included, in any transfer syntax.

        Parts are parsed here rather than by dicomweb-client because some archives (Orthanc's
        DICOMweb plugin among them) send each instance without the 128-byte preamble and
        'DICM' prefix, which pydicom 3 refuses unless told to read leniently.
        """
        url = f"{self._url}/studies/{study_instance_uid}"
        headers = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}

        def get() -> requests.Response:
            response = self._session.get(url, headers=headers, timeout=self._timeout)
            response.raise_for_status()
            return response

        response = self._call("retrieve", study_instance_uid, get)
        datasets = []
        for index, part in enumerate(iter_multipart(response)):
            try:
                datasets.append(dcmread(BytesIO(part), force=True))
            except (InvalidDicomError, EOFError, ValueError) as exc:
                raise PacsRequestError(
                    f"retrieve of {study_ref(study_instance_uid)}: part {index} is not DICOM ({exc})"
                ) from None
        return datasets

    def search_studies(self, offset: int = 0, limit: int = 100, **filters) -> list[dict]:
        """QIDO-RS study search (DICOM JSON), paged."""
        return self._call(
            "search", None, self._client.search_for_studies, offset=offset, limit=limit, search_filters=filters or None
        )


def iter_multipart(response: requests.Response) -> Iterator[bytes]:
    """The bodies of a multipart/related response, in order."""
    content_type = response.headers.get("Content-Type", "")
    boundary = None
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise PacsRequestError(f"WADO-RS answer is not multipart (Content-Type {content_type!r})")
    delimiter = b"--" + boundary.encode()
    for chunk in response.content.split(delimiter)[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        _headers, sep, body = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        yield body[:-2] if body.endswith(b"\r\n") else body
