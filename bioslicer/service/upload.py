"""Reading an upload: the streamed multipart parser, labels, form fields and parameter checks."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import unicodedata
from pathlib import Path

from ..errors import BioslicerError

MESH_EXTENSIONS = (".stl", ".obj", ".ply", ".3mf", ".swc", ".vtp", ".vtk")   # meshes and vessel centerlines
BUNDLE_EXTENSIONS = (".zip",)
ALLOWED_EXTENSIONS = MESH_EXTENSIONS + BUNDLE_EXTENSIONS
UNITS = ("um", "mm", "nm")
_MAX_FIELDS = 200
_MAX_FIELD_BYTES = 64 * 1024
_MAX_PARAM_DEPTH = 4


class ServiceError(Exception):
    """A request the service refuses: HTTP ``status`` with a one-line ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def safe_label(name: str, limit: int = 100) -> str:
    """A user's file name reduced to a display label: last path part, printable, at most ``limit``
    characters. Never used as a path."""
    name = unicodedata.normalize("NFC", str(name or ""))
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(c if (c.isprintable() and c not in "\"'<>`|:*?") else "_" for c in name).strip(" .")
    return name[-limit:] or "upload"


def _owner_label(owner: str) -> str:
    owner = "".join(c for c in unicodedata.normalize("NFC", owner or "") if c.isprintable()).strip()
    if len(owner) > 64:
        raise ServiceError(400, "owner label is longer than 64 characters; use a short name or initials")
    return owner or "anonymous"


def _bundled_printers() -> dict:
    from ..printers import list_printers, printers_dir

    stems = {p.stem for p in printers_dir().glob("*.toml")}
    return {p.name: p for p in list_printers() if p.name in stems}


def _parse_bool(field: str, text: str) -> bool:
    t = (text or "").strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("", "0", "false", "no", "off"):
        return False
    raise ServiceError(400, f"form field {field!r} must be true or false, got {text!r}")


def check_params(printer: str, params: dict) -> dict:
    """Validate recipe overrides for a bundled printer exactly as the CLI does.

    Parameters
    ----------
    printer : str
        A bundled printer profile name (paths are refused: the service never reads user paths).
    params : dict
        Recipe field -> value (typed values, or text read like CLI ``--set key=value``).

    Returns
    -------
    dict
        The overrides, typed, to store with the job. Raises :class:`ServiceError` (400).
    """
    printers = _bundled_printers()
    if printer not in printers:
        raise ServiceError(400, f"unknown printer {printer!r}; use one of {', '.join(sorted(printers))}")
    if "power_field_path" in params and params["power_field_path"] not in (None, ""):
        raise ServiceError(400, "recipe key 'power_field_path' names a file on the server; the service does not "
                                "take file paths as parameters")
    if _depth(params) > _MAX_PARAM_DEPTH:
        raise ServiceError(400, f"form field 'params' is nested deeper than {_MAX_PARAM_DEPTH} levels; recipe "
                                "fields are at most {\"power_mw\": {\"hatch\": 20}} deep")
    from ..exposure import check_exposure
    from ..pipeline import resolve_recipe

    pr = printers[printer]
    try:
        rec = resolve_recipe(pr, None, params)
        check_exposure(rec, pr)  # what slice_to_job checks before loading the mesh
        check_recipe_budget(rec, pr)
    except BioslicerError as exc:
        raise ServiceError(400, str(exc).splitlines()[0]) from None
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise ServiceError(400, f"bad recipe parameters ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
                                "; send recipe fields with plain values as in GET /api/printers/<name>/defaults"
                           ) from None
    return params


def check_bundle(path: Path, max_inflate_bytes: int) -> None:
    """Refuse (400) an uploaded bundle whose directory shows a bomb (more than 10,000 entries,
    inflating past ``max_inflate_bytes`` or past :func:`bioslicer.fileio.zip_inflate_limit` of its
    own size) or entries that are absolute, climb out with ``..`` or are links."""
    import zipfile

    from ..fileio import MAX_ZIP_ENTRIES, check_zip, zip_inflate_limit

    try:
        with zipfile.ZipFile(path) as zf:
            limit = min(max_inflate_bytes, zip_inflate_limit(path.stat().st_size))
            check_zip(zf, limit, MAX_ZIP_ENTRIES, what="the bundle", plain_files=True)
    except (zipfile.BadZipFile, OSError):
        raise ServiceError(400, "the .zip upload is not a readable zip archive; upload the bundle made by "
                                "`bioslicer slice --zip`") from None
    except BioslicerError as exc:
        raise ServiceError(400, str(exc)) from None


def check_recipe_budget(recipe, printer) -> None:
    """The recipe checks the CLI makes before planning (:func:`bioslicer.budget.check_recipe`:
    values that make no physical sense for the printer); BioslicerError becomes HTTP 400."""
    from ..budget import check_recipe

    check_recipe(recipe, printer)


def _depth(obj, limit: int = 64) -> int:
    """Nesting depth of JSON-like ``obj`` (counted up to ``limit``, without recursion)."""
    depth, level = 0, [obj]
    while level and depth < limit:
        nxt = []
        for o in level:
            if isinstance(o, dict):
                nxt.extend(o.values())
            elif isinstance(o, list):
                nxt.extend(o)
        if not nxt and not any(isinstance(o, (dict, list)) for o in level):
            break
        depth += 1
        level = nxt
    return depth


def parse_params_json(raw: str) -> dict:
    """The ``params`` form field (a JSON object of recipe fields) -> dict; ServiceError 400 when it
    is not JSON, not an object or nested absurdly deep."""
    try:
        params = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ServiceError(400, f"form field 'params' is not valid JSON ({exc.msg}); send an object such "
                                "as {\"hatch_um\": 0.3}") from None
    except RecursionError:
        raise ServiceError(400, f"form field 'params' is nested deeper than {_MAX_PARAM_DEPTH} levels; send a "
                                "flat object of recipe fields") from None
    if not isinstance(params, dict):
        raise ServiceError(400, "form field 'params' must be a JSON object of recipe fields")
    if _depth(params) > _MAX_PARAM_DEPTH:
        raise ServiceError(400, f"form field 'params' is nested deeper than {_MAX_PARAM_DEPTH} levels; send a "
                                "flat object of recipe fields")
    return params


def _typed_form_params(fields: dict) -> dict:
    """Form text fields -> overrides, read like the CLI's ``--set key=value``."""
    from ..recipe import recipe_overrides_from_cli

    pairs = [f"{k}={v}" for k, v in sorted(fields.items()) if str(v).strip() != ""]
    try:
        return recipe_overrides_from_cli(pairs)
    except BioslicerError as exc:
        raise ServiceError(400, str(exc).splitlines()[0]) from None


# ----------------------------------------------------------------------------- upload parsing
class _Upload:
    """Streams one multipart/form-data request: the single file part goes to a temporary file in a
    marked folder ``DIR/incoming/upload-<random>/`` (refused past ``max_bytes``), text fields are
    collected (bounded)."""

    def __init__(self, layout, max_bytes: int) -> None:
        self.layout = layout
        self.dir: Path | None = None
        self.max_bytes = max_bytes
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.ext: str | None = None
        self.tmp: Path | None = None
        self.size = 0
        self._fh = None
        self._head_name = b""
        self._head_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._part_name: str | None = None
        self._is_file = False
        self._buf = bytearray()
        self._head = b""

    # callbacks of python_multipart.MultipartParser
    def on_part_begin(self) -> None:
        self._headers = {}
        self._part_name = None
        self._is_file = False
        self._buf = bytearray()

    def on_header_field(self, data, start, end) -> None:
        self._head_name += data[start:end]

    def on_header_value(self, data, start, end) -> None:
        self._head_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._head_name.strip().lower()] = self._head_value.strip()
        self._head_name = b""
        self._head_value = b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        disp, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disp != b"form-data" or b"name" not in opts:
            raise ServiceError(400, "malformed multipart body: a part has no form-data name")
        self._part_name = opts[b"name"].decode("utf-8", "replace")
        if b"filename" in opts:
            if self._part_name != "file":
                raise ServiceError(400, f"unexpected file field {self._part_name!r}; send the part as field 'file'")
            if self.filename is not None:
                raise ServiceError(400, "more than one file in the upload; send one file per job")
            self.filename = opts[b"filename"].decode("utf-8", "replace")
            label = safe_label(self.filename)
            ext = os.path.splitext(label)[1].lower()
            if ext not in ALLOWED_EXTENSIONS:
                raise ServiceError(415, f"file type {ext or '(none)'!r} is not accepted; upload a mesh "
                                        f"({', '.join(MESH_EXTENSIONS)}) or a job bundle (.zip)")
            self.ext = ext
            self._is_file = True
            self.dir = self.layout.make_temp_dir(self.layout.incoming / f"upload-{secrets.token_hex(8)}")
            self.tmp = self.dir / "data.part"
            self._fh = open(self.tmp, "xb")
        else:
            if len(self.fields) >= _MAX_FIELDS:
                raise ServiceError(400, f"too many form fields (limit {_MAX_FIELDS})")

    def on_part_data(self, data, start, end) -> None:
        n = end - start
        if self._is_file:
            self.size += n
            if self.size > self.max_bytes:
                raise ServiceError(413, f"upload is larger than the limit of {_mb(self.max_bytes)}; "
                                        "ask the operator to raise --max-upload-mb or upload a smaller file")
            if len(self._head) < 8:
                self._head += bytes(data[start:min(end, start + 8 - len(self._head))])
            self._fh.write(data[start:end])
        else:
            if len(self._buf) + n > _MAX_FIELD_BYTES:
                raise ServiceError(413, f"form field {self._part_name!r} is longer than {_MAX_FIELD_BYTES} bytes")
            self._buf += data[start:end]

    def on_part_end(self) -> None:
        if self._is_file:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
        else:
            try:
                self.fields[self._part_name] = self._buf.decode("utf-8")
            except UnicodeDecodeError:
                raise ServiceError(400, f"form field {self._part_name!r} is not UTF-8 text") from None

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.tmp = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value",
            "on_header_end", "on_headers_finished")}


def _mb(n: int) -> str:
    return f"{n / 1e6:g} MB"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

