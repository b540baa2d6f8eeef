"""One Pascal VOC / LabelImg annotation file, parsed safely: expat into an ElementTree, with any ``<!DOCTYPE`` /
``<!ENTITY`` declaration refused (in every encoding, UTF-16 too) so that a hostile file cannot expand entities, a size
limit, and one-line ``XmlRefused`` reasons for a file that is not a usable annotation. ``ghostdet.data.voc`` scans
folders of them."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

MAX_XML_BYTES = 16 << 20  # a VOC annotation is a few kB; anything this big is not one


class XmlRefused(ValueError):
    """The file is not a usable VOC xml (malformed, refused declarations, wrong root element)."""


@dataclass
class VocObject:
    line: int
    name: str
    coords: list  # the <bndbox> texts xmin, ymin, xmax, ymax (None where missing); None without <bndbox>
    difficult: str | None
    truncated: str | None


@dataclass
class VocAnnotation:
    size: tuple | None  # (width, height) from <size>, None when absent or zero
    size_text: str | None  # the <size> values when they are not numbers
    objects: list = field(default_factory=list)


def _refuse(*_):
    raise XmlRefused("it declares a DOCTYPE or an ENTITY, refused (entities are never expanded)")


def parse_voc_xml(path: str | Path) -> VocAnnotation:
    """Parse one VOC/LabelImg annotation; ``XmlRefused`` (one line) when it is not a usable one."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_XML_BYTES + 1)
    except OSError as e:
        raise XmlRefused(f"cannot read it ({e.strerror or e})") from None
    if len(data) > MAX_XML_BYTES:
        raise XmlRefused(f"larger than {MAX_XML_BYTES >> 20} MB, not a VOC annotation")
    view = data
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:64]:  # UTF-16: look at the characters
        try:
            view = data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            pass
    upper = view.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        _refuse()
    parser = expat.ParserCreate()
    builder = ET.TreeBuilder()
    object_lines = {}

    def start(tag, attrs):
        elem = builder.start(tag, attrs)
        if tag == "object":
            object_lines[id(elem)] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = _refuse  # the byte check above already caught these; expat sees every encoding
    parser.EntityDeclHandler = _refuse
    try:
        parser.Parse(data, True)
        root = builder.close()
    except expat.ExpatError as e:
        raise XmlRefused(f"not well-formed xml ({expat.ErrorString(e.code)}, line {e.lineno})") from None
    except (ValueError, TypeError, LookupError) as e:
        if isinstance(e, XmlRefused):
            raise
        raise XmlRefused(f"not readable xml ({' '.join(str(e).split())})") from None
    if root.tag != "annotation":
        raise XmlRefused(f"its root element is <{root.tag}>, not <annotation>")
    ann = VocAnnotation(*_size(root.find("size")))
    for obj in root.findall("object"):
        box = obj.find("bndbox")
        coords = None if box is None else [_text(box, k) for k in ("xmin", "ymin", "xmax", "ymax")]
        ann.objects.append(VocObject(object_lines.get(id(obj), 0), _text(obj, "name") or "", coords,
                                     _text(obj, "difficult"), _text(obj, "truncated")))
    return ann


def _text(elem, tag: str) -> str | None:
    value = elem.findtext(tag)
    return None if value is None else value.strip()


def _size(elem) -> tuple:
    if elem is None:
        return None, None
    w, h = _text(elem, "width"), _text(elem, "height")
    try:
        width, height = int(float(w)), int(float(h))
    except (TypeError, ValueError, OverflowError):
        return None, f"{w}x{h}"
    return ((width, height) if width > 0 and height > 0 else None), None


def parse_flag(value: str | None) -> bool | None:
    """``<difficult>``/``<truncated>``: 0/1 (also false/true); None when it is something else."""
    if value in (None, ""):
        return False
    low = value.lower()
    if low in ("1", "true", "yes"):
        return True
    if low in ("0", "false", "no"):
        return False
    try:
        return float(value) != 0
    except ValueError:
        return None


__all__ = ["MAX_XML_BYTES", "VocAnnotation", "VocObject", "XmlRefused", "parse_flag", "parse_voc_xml"]
