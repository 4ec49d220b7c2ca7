"""How many reports per second ``merge`` folds, and how many states per second the views decode.

Run: ``python3 bench/merge_throughput.py [--seconds 0.5] [--no-peer]``. Each case runs for about the given
time (bounded by an iteration cap) on one core and prints operations per second and the mean
time per operation. The reports are real-shaped (the key sets and wire types of an X1 Carbon
with four AMS units, and of a P1S delta) but invented.

The last section runs the same report bytes through bambulabs-api 2.6.6 (``json.loads`` +
``PrinterMQTTClient.manual_update``, in its own venv) beside ``json.loads`` + our ``merge``. Its
fold is a shallow ``dict |=`` per section: cheaper, but wrong for deltas that carry part of a nested
object (an AMS tray ``{id, state}`` replaces the whole ``ams`` object there).
"""


from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _peers import third_party_python
from bambulab.protocol.state import merge
from bambulab.protocol.views import PrinterStatus

JSON = dict[str, Any]
MAX_ITERATIONS = 5_000_000

PEER_SCRIPT = r"""
import json, sys, time
from bambulabs_api.mqtt_client import PrinterMQTTClient
cases = json.loads(open(sys.argv[1]).read())
seconds = float(sys.argv[2])
client = PrinterMQTTClient("127.0.0.1", "00000000", "SERIAL000000000")
out = {}
for name, payloads in cases.items():
    blobs = [p.encode() for p in payloads]
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(256):
            client.manual_update(json.loads(blobs[n % len(blobs)]))
            n += 1
        if time.perf_counter() >= deadline:
            break
    out[name] = n / (time.perf_counter() - start)
print("PEER " + json.dumps(out))
"""


def _tray(slot: int, material: str, color: str) -> JSON:
    return {
        "id": str(slot), "state": 11, "tray_type": material, "tray_sub_brands": f"{material} Basic",
        "tray_info_idx": "GFA00", "tray_id_name": "A00-W1", "tray_color": color, "cols": [color], "ctype": 0,
        "remain": 80, "nozzle_temp_min": "190", "nozzle_temp_max": "230", "bed_temp": "0", "bed_temp_type": "0",
        "drying_temp": "55", "drying_time": "8", "tray_diameter": "1.75", "tray_weight": "1000",
        "tag_uid": "DE6CF07300000100", "tray_uuid": "5F3D8925633343C29FB9A97FA9125971",
        "xcam_info": "A4388813E803E803CDCC4C3F", "cali_idx": -1, "total_len": 330000,
    }


def _spool(spool_id: str) -> JSON:
    return {**_tray(0, "", "00000000"), "id": spool_id, "state": 0}


def x1c_full_report() -> JSON:
    units = [
        {"id": str(u), "humidity": "5", "humidity_raw": "8", "temp": "26.2", "info": info, "dry_time": 0,
         "tray": [_tray(s, "PLA", "FF6A13FF") for s in range(4)]}
        for u, info in ((0, "1001"), (1, "1001"), (2, "142023"))
    ]
    units.append({"id": "128", "humidity": "5", "humidity_raw": "8", "temp": "45.2", "info": "2004", "dry_time": 0,
                  "tray": [_tray(0, "PA-CF", "000000FF")]})
    return {"print": {
        "command": "push_status", "msg": 0, "sequence_id": "30534",
        "ams": {"ams": units, "ams_exist_bits": "17", "ams_exist_bits_raw": "17", "tray_exist_bits": "10eff",
                "tray_is_bbl_bits": "10eff", "tray_read_done_bits": "10eff", "tray_reading_bits": "0",
                "tray_now": "5", "tray_pre": "5", "tray_tar": "5", "version": 30185, "insert_flag": True,
                "power_on_flag": False, "cali_id": 0, "cali_stat": 0, "unbind_ams_stat": 0},
        "ams_rfid_status": 0, "ams_status": 0, "ap_err": 0, "aux": "280100C", "aux_part_fan": True, "batch_id": 0,
        "bed_target_temper": 55.0, "bed_temper": 55.0, "big_fan1_speed": "10", "big_fan2_speed": "4",
        "cali_version": 0, "canvas_id": 0, "care": [{"id": "cr", "info": "20631064"}, {"id": "lr", "info": "1864"}],
        "cfg": "FB299", "cooling_fan_speed": "15", "design_id": "662074",
        "device": {
            "bed": {"info": {"temp": 55}, "state": 0}, "bed_temp": 55, "cam": {"laser": {"cond": 253, "state": 0}},
            "ctc": {"info": {"temp": 35}, "state": 0},
            "ext_tool": {"calib": 2, "low_prec": True, "mount": 0, "th_temp": 0, "type": ""},
            "extruder": {"info": [{"filam_bak": [], "hnow": 0, "hpre": 0, "htar": 0, "id": 0, "info": 8,
                                   "snow": 0x0101, "spre": 255, "star": 255, "stat": 0, "temp": 220}], "state": 1},
            "fan": 0, "laser": {"power": 0},
            "nozzle": {"exist": 1, "info": [{"diameter": 0.4, "id": 0, "tm": 0, "type": "HX01", "wear": 0}],
                       "state": 0},
            "plate": {"base": 1, "cali2d_id": "", "cur_id": "", "mat": 1, "tar_id": ""}, "type": 1,
        },
        "err": "0", "fail_reason": "0", "fan_gear": 0, "file": "/data/Metadata/plate_1.gcode", "force_upgrade": False,
        "fun": "11A30F9CFB", "gcode_file": "/data/Metadata/plate_1.gcode", "gcode_file_prepare_percent": "100",
        "gcode_state": "RUNNING", "heatbreak_fan_speed": "15", "hms": [{"attr": 0x03000100, "code": 0x00030001}],
        "home_flag": -1067070064, "hw_switch_state": 0, "info": {"temp": 35},
        "ipcam": {"agora_service": "disable", "brtc_service": "enable", "bs_state": 0, "ipcam_dev": "1",
                  "ipcam_record": "enable", "laser_preview_res": 7, "mode_bits": 2, "resolution": "1080p",
                  "rtsp_url": "disable", "timelapse": "disable", "tl_store_hpd_type": 2, "tl_store_path_type": 2,
                  "tutk_server": "disable"},
        "job": {"cur_stage": {"idx": 0, "state": 0}, "stage": [{"clock_in": False, "color": [""], "diameter": [0.4],
                "est_time": 0, "heigh": 0.0, "idx": 0, "platform": "", "print_then": False, "proc_list": [],
                "tool": ["HS01"], "type": 2}]},
        "job_attr": 3, "job_id": "366719004", "layer_num": 120,
        "lights_report": [{"mode": "on", "node": "chamber_light"}, {"mode": "flashing", "node": "work_light"}],
        "mapping": [258], "mc_action": 255, "mc_err": 0, "mc_percent": 42, "mc_print_error_code": "0",
        "mc_print_stage": "2", "mc_print_sub_stage": 0, "mc_remaining_time": 95, "mc_stage": 2,
        "model_id": "US56eb96a1a2b948",
        "net": {"conf": 16, "info": [{"ip": 1359612426, "mask": 16711679}, {"ip": 0, "mask": 0}]},
        "nozzle_diameter": "0.4", "nozzle_target_temper": 220.0, "nozzle_temper": 219.0,
        "nozzle_type": "hardened_steel", "online": {"ahb": True, "ext": False, "version": 10}, "percent": 42,
        "plate_cnt": 1, "plate_id": 1, "plate_idx": 1, "prepare_per": 100, "print_error": 0,
        "print_gcode_action": 255, "print_real_action": 0, "print_type": "cloud", "profile_id": "128885490",
        "project_id": "344815093", "queue": 0, "queue_est": 0, "queue_number": 0, "queue_sts": 0, "queue_total": 0,
        "remain_time": 95, "s_obj": [], "sdcard": True, "spd_lvl": 2, "spd_mag": 100, "stat": "7A58000", "state": 4,
        "stg": [2, 14, 1, 8], "stg_cur": 0, "subtask_id": "702384465", "subtask_name": "Hose fitting",
        "t_utc": 1748882419147, "task_id": "702383065", "total_layer_num": 480,
        "upgrade_state": {"ahb_new_version_number": "", "ams_new_version_number": "", "consistency_request": False,
                          "dis_state": 3, "err_code": 0, "ext_new_version_number": "", "force_upgrade": False,
                          "idx": 10, "idx2": 559919763, "lower_limit": "00.00.00.00", "message": "", "module": "",
                          "new_version_state": 2, "ota_new_version_number": "", "progress": "100", "sequence_id": 0,
                          "sn": "00M00A000000000", "status": "IDLE"},
        "upload": {"file_size": 0, "finish_size": 0, "message": "Good", "oss_url": "", "progress": 0,
                   "sequence_id": "0903", "speed": 0, "status": "idle", "task_id": "", "time_remaining": 0,
                   "trouble_id": ""},
        "ver": "20010", "vir_slot": [_spool("255")], "vt_tray": _spool("255"), "wifi_signal": "-66dBm",
        "xcam": {"allow_skip_parts": False, "buildplate_marker_detector": False, "first_layer_inspector": True,
                 "halt_print_sensitivity": "low", "print_halt": True, "printing_monitor": True,
                 "spaghetti_detector": True},
        "xcam_status": "0",
    }}


def x1c_version() -> JSON:
    return {"info": {"command": "get_version", "sequence_id": "1", "module": [
        {"name": "ota", "product_name": "Bambu Lab X1-Carbon", "sw_ver": "01.09.00.01", "hw_ver": "N/A", "sn": "S"},
        {"name": "ams/0", "product_name": "AMS (1)", "sw_ver": "00.01.06.62", "hw_ver": "AMS08", "sn": "A0"},
        {"name": "n3s/128", "product_name": "AMS HT (1)", "sw_ver": "02.00.19.67", "hw_ver": "N3S05", "sn": "H"},
    ]}}


def p1s_delta(seq: int) -> JSON:
    return {"print": {"nozzle_temper": 28.78125, "command": "push_status", "msg": 1, "sequence_id": str(seq)}}


def p1s_tray_delta(seq: int) -> JSON:
    return {"print": {"command": "push_status", "msg": 1, "sequence_id": str(seq),
                      "ams": {"ams": [{"id": "0", "tray": [{"id": "2", "state": 10}]}], "tray_now": "1"}}}


def measure(label: str, seconds: float, step: Callable[[int], object]) -> float:
    """Run ``step(i)`` for about ``seconds`` (checked every 256 calls); print and return ops/s."""
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while n < MAX_ITERATIONS:
        for _ in range(256):
            step(n)
            n += 1
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    rate = n / elapsed
    print(f"{label:<58} {rate:>12,.0f} /s  {elapsed / n * 1e6:>8.2f} µs each")
    return rate


def side_by_side(seconds: float, cases: dict[str, list[bytes]]) -> None:
    """decode + fold of the same bytes: ours in this process, bambulabs-api in its venv."""
    print("\nside by side: json.loads + fold, the same report bytes (reports/s)")
    ours: dict[str, float] = {}
    for name, blobs in cases.items():
        state: Any = merge(None, json.loads(blobs[0]))

        def step(i: int, blobs: list[bytes] = blobs) -> None:
            nonlocal state
            state = merge(state, json.loads(blobs[i % len(blobs)]))

        ours[name] = measure(f"bambulab: {name}", seconds, step)
    python = third_party_python("bambulabs_api.mqtt_client")
    if python is None:
        print("bambulabs-api 2.6.6: could not be installed; no comparison")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({k: [b.decode() for b in v] for k, v in cases.items()}, fh)
        path = Path(fh.name)
    try:
        done = subprocess.run([str(python), "-c", PEER_SCRIPT, str(path), str(seconds)], capture_output=True,
                              text=True, timeout=120)
    finally:
        path.unlink(missing_ok=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PEER ")]
    if not lines:
        print(f"bambulabs-api 2.6.6 failed: {done.stderr[-400:]}")
        return
    peer = json.loads(lines[-1][5:])
    for name, rate in peer.items():
        print(f"{'bambulabs-api 2.6.6: ' + name:<58} {rate:>12,.0f} /s   bambulab/peer = {ours[name] / rate:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per case (default 0.5)")
    parser.add_argument("--no-peer", action="store_true", help="skip the bambulabs-api comparison")
    args = parser.parse_args()
    seconds = args.seconds

    full = x1c_full_report()
    as_delta = {"print": {k: v for k, v in full["print"].items() if k != "msg"}}
    base = merge(merge(None, full), x1c_version())
    # A P1S-like state: the same shape, merged from a full push, then fed deltas.
    p1s_base = merge(None, full)
    deltas = [p1s_delta(i) for i in range(1024)]
    tray_deltas = [p1s_tray_delta(i) for i in range(1024)]

    print("merge()")
    state = base

    def fold_full(_: int) -> None:
        nonlocal state
        state = merge(state, full)

    measure("X1C full report (msg 0: replaces print)", seconds, fold_full)
    state = base

    def fold_full_as_delta(_: int) -> None:
        nonlocal state
        state = merge(state, as_delta)

    measure("X1C full report without msg (merged key by key, by id)", seconds, fold_full_as_delta)
    state = p1s_base

    def fold_delta(i: int) -> None:
        nonlocal state
        state = merge(state, deltas[i & 1023])

    measure("P1S delta: one temperature", seconds, fold_delta)
    state = p1s_base

    def fold_tray(i: int) -> None:
        nonlocal state
        state = merge(state, tray_deltas[i & 1023])

    measure("P1S delta: AMS tray {id, state} + tray_now", seconds, fold_tray)

    print("views")
    measure("PrinterStatus(X1C state).to_dict() (everything)", seconds, lambda _: PrinterStatus(base).to_dict())
    measure("PrinterStatus(X1C state).temperatures + job", seconds,
            lambda _: (lambda v: (v.temperatures, v.job))(PrinterStatus(base)))
    measure("PrinterStatus(X1C state).active_tray", seconds, lambda _: PrinterStatus(base).active_tray)

    # The farm's path: decode each new state with the previous status of the same printer, so
    # unchanged AMS units and spools are reused (by identity after a delta, by equality after a
    # full push, which brings new but equal objects).
    pushes = [merge(base, x1c_full_report()) for _ in range(8)]
    previous = PrinterStatus(pushes[-1])
    previous.to_dict()

    def decode_after_full_push(i: int) -> None:
        nonlocal previous
        previous = PrinterStatus(pushes[i & 7], previous=previous)
        previous.to_dict()

    measure("to_dict() after each X1C full push, previous= given", seconds, decode_after_full_push)
    p1s_states = [merge(p1s_base, d) for d in deltas[:8]]
    previous = PrinterStatus(p1s_states[-1])
    previous.to_dict()

    def decode_after_delta(i: int) -> None:
        nonlocal previous
        previous = PrinterStatus(p1s_states[i & 7], previous=previous)
        previous.to_dict()

    measure("to_dict() after each P1S delta, previous= given", seconds, decode_after_delta)

    if not args.no_peer:
        side_by_side(seconds, {
            "X1C full report": [json.dumps(full).encode()],
            "P1S one-key delta": [json.dumps(d).encode() for d in deltas[:64]],
            "P1S AMS tray delta": [json.dumps(d).encode() for d in tray_deltas[:64]],
        })


if __name__ == "__main__":
    main()
