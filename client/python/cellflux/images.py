"""Images between numpy and the wire: C×H×W uint16 arrays ↔ cellflux.v1.Image.

Arrays go out as RAW_U16_LE (exactly the pixels, no codec) and come back the same way. Encoded
files (16-bit TIFF or PNG, one per channel) can be sent unchanged; the server decodes them and
only their size is read here. write_tiff stores one channel as a baseline 16-bit TIFF so outputs
open in Fiji/CellProfiler without an imaging library.
"""
import os
import struct

import numpy as np

from cellflux.v1 import cellflux_pb2 as pb


def image_to_proto(image, channel_names):
    """A C×H×W array (any integer dtype, values in 0..65535) → Image with RAW_U16_LE channels.

    ValueError when the array is not 3-D, its channel count is not len(channel_names) or a value
    does not fit 16 bits; TypeError for a non-integer dtype (convert explicitly: silently
    rounding floats would change the control).
    """
    array = np.asarray(image)
    if array.ndim != 3:
        raise ValueError(f"control image has shape {array.shape}; expected C×H×W "
                         f"({len(channel_names)} channels: {', '.join(channel_names)})")
    if array.shape[0] != len(channel_names):
        raise ValueError(f"control image has {array.shape[0]} channels (shape {array.shape}); "
                         f"the model needs {len(channel_names)}: {', '.join(channel_names)}")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"control image dtype is {array.dtype}; expected an integer type "
                        "(uint16 pixels in the instrument's scale)")
    if array.dtype != np.uint16 and array.size and (array.min() < 0 or array.max() > 65535):
        raise ValueError(f"control image values span {array.min()}..{array.max()}; "
                         "they must fit unsigned 16 bits")
    _, height, width = array.shape
    out = pb.Image(height=height, width=width)
    for name, plane in zip(channel_names, array):
        out.channels.add(name=name, encoding=pb.RAW_U16_LE,
                         data=np.ascontiguousarray(plane, dtype="<u2").tobytes())
    return out


def files_to_proto(files, channel_names):
    """One encoded 16-bit TIFF or PNG per channel (paths or bytes, model order) → Image."""
    if len(files) != len(channel_names):
        raise ValueError(f"{len(files)} control files given; the model needs "
                         f"{len(channel_names)}: {', '.join(channel_names)}")
    out = pb.Image()
    for name, item in zip(channel_names, files):
        label = item if isinstance(item, (str, os.PathLike)) else f"channel {name}"
        data = _read_bytes(item)
        encoding, width, height = _sniff(data, label)
        if out.channels and (height, width) != (out.height, out.width):
            raise ValueError(f"{label} is {height}×{width}; the first channel is "
                             f"{out.height}×{out.width}")
        out.height, out.width = height, width
        out.channels.add(name=name, encoding=encoding, data=data)
    return out


def proto_to_array(image):
    """Image with RAW_U16_LE (or unset-encoding) channels → C×H×W uint16 array."""
    planes = []
    for ch in image.channels:
        if ch.encoding not in (pb.ENCODING_UNSPECIFIED, pb.RAW_U16_LE):
            raise ValueError(f"channel {ch.name} is {pb.Encoding.Name(ch.encoding)}; "
                             "expected RAW_U16_LE")
        expected = 2 * image.height * image.width
        if len(ch.data) != expected:
            raise ValueError(f"channel {ch.name} has {len(ch.data)} bytes; a "
                             f"{image.height}×{image.width} RAW_U16_LE plane has {expected}")
        planes.append(np.frombuffer(ch.data, dtype="<u2").reshape(image.height, image.width))
    if not planes:
        return np.zeros((0, image.height, image.width), dtype=np.uint16)
    return np.stack(planes).astype(np.uint16)


def write_tiff(path, plane):
    """Writes one H×W uint16 plane as an uncompressed little-endian grayscale 16-bit TIFF."""
    plane = np.ascontiguousarray(plane, dtype="<u2")
    if plane.ndim != 2:
        raise ValueError(f"write_tiff takes one H×W plane, got shape {plane.shape}")
    height, width = plane.shape
    data = plane.tobytes()
    # Header (8 bytes), then the pixels, then one IFD with its entries sorted by tag.
    entries = [(256, 4, width), (257, 4, height), (258, 3, 16), (259, 3, 1), (262, 3, 1),
               (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, len(data)), (284, 3, 1)]
    ifd_offset = 8 + len(data) + (len(data) & 1)
    ifd = struct.pack("<H", len(entries))
    for tag, typ, value in entries:
        packed = struct.pack("<H", value) + b"\0\0" if typ == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, 1) + packed
    ifd += struct.pack("<I", 0)
    with open(path, "wb") as f:
        f.write(b"II*\0" + struct.pack("<I", ifd_offset) + data + b"\0" * (len(data) & 1) + ifd)


def _read_bytes(item):
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    with open(item, "rb") as f:
        return f.read()


def _sniff(data, label):
    """(encoding, width, height) of a TIFF or PNG from its header, without decoding pixels."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return pb.PNG, width, height
    if data[:4] in (b"II*\0", b"MM\0*"):
        order = "<" if data[:2] == b"II" else ">"
        try:
            (ifd,) = struct.unpack(order + "I", data[4:8])
            (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
            size = {}
            for i in range(count):
                entry = data[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
                tag, typ = struct.unpack(order + "HH", entry[:4])
                if tag in (256, 257):
                    fmt = "H" if typ == 3 else "I"
                    size[tag] = struct.unpack(order + fmt, entry[8:8 + struct.calcsize(fmt)])[0]
            return pb.TIFF, size[256], size[257]
        except (struct.error, KeyError):
            raise ValueError(f"{label}: TIFF header without ImageWidth/ImageLength") from None
    raise ValueError(f"{label} is neither a TIFF nor a PNG (first bytes {data[:8]!r})")
