"""H.264 synthesis without an encoder: parameter sets and I_PCM IDR pictures of rendered frames."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    pass

__all__ = ["h264_parameter_sets", "pcm_idr_slice"]


# --------------------------------------------------------------------------- H.264 helpers


class _BitWriter:
    def __init__(self) -> None:
        self._bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self._bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def ue(self, value: int) -> None:
        v = value + 1
        n = v.bit_length()
        self.u(n - 1, 0)
        self.u(n, v)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def aligned(self) -> bytes:
        """The bits so far, padded with zero bits to a whole byte."""
        while len(self._bits) % 8:
            self._bits.append(0)
        out = bytearray()
        for i in range(0, len(self._bits), 8):
            byte = 0
            for b in self._bits[i : i + 8]:
                byte = (byte << 1) | b
            out.append(byte)
        return bytes(out)

    def trailing(self) -> bytes:
        """The bits so far with rbsp_trailing_bits (a one bit, then zero bits to a byte)."""
        self._bits.append(1)
        return self.aligned()


_EPB = re.compile(b"\x00\x00(?=[\x00-\x03])")


def _escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes (00 00 0x -> 00 00 03 0x)."""
    return _EPB.sub(b"\x00\x00\x03", rbsp)


def h264_parameter_sets(width: int, height: int) -> tuple[bytes, bytes]:
    """SPS and PPS NAL units (no start codes) for a Constrained Baseline stream of this size."""
    mbs_w, mbs_h = (width + 15) // 16, (height + 15) // 16
    level = 31 if mbs_w * mbs_h <= 3600 else 40 if mbs_w * mbs_h <= 8192 else 51
    sps = _BitWriter()
    sps.u(8, 66)  # profile_idc: Baseline
    sps.u(8, 0xC0)  # constraint_set0 + set1: Constrained Baseline
    sps.u(8, level)
    sps.ue(0)  # seq_parameter_set_id
    sps.ue(0)  # log2_max_frame_num_minus4
    sps.ue(2)  # pic_order_cnt_type
    sps.ue(1)  # max_num_ref_frames
    sps.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    sps.ue(mbs_w - 1)
    sps.ue(mbs_h - 1)
    sps.u(1, 1)  # frame_mbs_only_flag
    sps.u(1, 1)  # direct_8x8_inference_flag
    crop_r, crop_b = (mbs_w * 16 - width) // 2, (mbs_h * 16 - height) // 2
    if crop_r or crop_b:
        sps.u(1, 1)
        sps.ue(0)
        sps.ue(crop_r)
        sps.ue(0)
        sps.ue(crop_b)
    else:
        sps.u(1, 0)
    sps.u(1, 0)  # vui_parameters_present_flag
    pps = _BitWriter()
    pps.ue(0)  # pic_parameter_set_id
    pps.ue(0)  # seq_parameter_set_id
    pps.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    pps.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    pps.ue(0)  # num_slice_groups_minus1
    pps.ue(0)  # num_ref_idx_l0_default_active_minus1
    pps.ue(0)  # num_ref_idx_l1_default_active_minus1
    pps.u(1, 0)  # weighted_pred_flag
    pps.u(2, 0)  # weighted_bipred_idc
    pps.se(0)  # pic_init_qp_minus26
    pps.se(0)  # pic_init_qs_minus26
    pps.se(0)  # chroma_qp_index_offset
    pps.u(1, 1)  # deblocking_filter_control_present_flag
    pps.u(1, 0)  # constrained_intra_pred_flag
    pps.u(1, 0)  # redundant_pic_cnt_present_flag
    return b"\x67" + _escape(sps.trailing()), b"\x68" + _escape(pps.trailing())


def pcm_idr_slice(img: Image.Image, width: int, height: int, idr_id: int) -> bytes:
    """One IDR picture (NAL unit, no start code) as a single slice of I_PCM macroblocks.

    I_PCM carries raw samples with no prediction or transform: bulky (1.5 bytes per pixel) but
    exact, and it needs nothing beyond Pillow. Every H.264 decoder can show it.
    """
    mbs_w, mbs_h = (width + 15) // 16, (height + 15) // 16
    pw, ph = mbs_w * 16, mbs_h * 16
    img = img.convert("RGB")
    if img.size != (width, height):
        img = img.resize((width, height))
    if (pw, ph) != (width, height):
        padded = Image.new("RGB", (pw, ph))
        padded.paste(img, (0, 0))
        img = padded
    y_plane, cb_plane, cr_plane = img.convert("YCbCr").split()
    y = y_plane.tobytes()
    cw = pw // 2
    cb = cb_plane.resize((cw, ph // 2), Image.Resampling.BOX).tobytes()
    cr = cr_plane.resize((cw, ph // 2), Image.Resampling.BOX).tobytes()

    head = _BitWriter()
    head.u(8, 0x65)  # NAL header: nal_ref_idc 3, nal_unit_type 5 (IDR slice)
    head.ue(0)  # first_mb_in_slice
    head.ue(7)  # slice_type: I, and every slice of the picture is I
    head.ue(0)  # pic_parameter_set_id
    head.u(4, 0)  # frame_num (log2_max_frame_num = 4)
    head.ue(idr_id & 0xFFFF)  # idr_pic_id
    head.u(1, 0)  # no_output_of_prior_pics_flag
    head.u(1, 0)  # long_term_reference_flag
    head.se(0)  # slice_qp_delta
    head.ue(1)  # disable_deblocking_filter_idc: off
    head.ue(25)  # the first macroblock's mb_type: I_PCM
    first_prefix = head.aligned()  # pcm_alignment_zero_bits up to the byte boundary
    mb = _BitWriter()
    mb.ue(25)
    prefix = mb.aligned()  # later macroblocks start byte-aligned: mb_type, then alignment

    parts: list[bytes] = []
    for my in range(mbs_h):
        for mx in range(mbs_w):
            parts.append(first_prefix if my == 0 and mx == 0 else prefix)
            base = my * 16 * pw + mx * 16
            parts.extend(y[base + row * pw : base + row * pw + 16] for row in range(16))
            cbase = my * 8 * cw + mx * 8
            parts.extend(cb[cbase + row * cw : cbase + row * cw + 8] for row in range(8))
            parts.extend(cr[cbase + row * cw : cbase + row * cw + 8] for row in range(8))
    parts.append(b"\x80")  # rbsp_slice_trailing_bits
    return _escape(b"".join(parts))
