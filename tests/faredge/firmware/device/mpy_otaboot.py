"""The boot half of OTA (firmware/micropython/otaboot.py) inside MicroPython: which slot a boot
runs, the trial, the rollback after an unconfirmed trial, a serial deploy taking over."""

import os

import otaboot


def _clean():
    for p in ("/ota.json", "/ota.json.tmp"):
        _remove(p)


def _remove(p):
    try:
        os.remove(p)
    except OSError:
        return False
    return True


def _trial():
    trial = {"s": "b", "r": 7, "v": "7", "t": 1, "p": "a", "pr": 6, "pv": "6"}
    otaboot.save(dict(trial, hi=7, base=otaboot.mark()))


def test_no_pointer_runs_the_serial_install():
    _clean()
    path = ["", "/lib"]
    assert otaboot.boot(path) == {} and path == ["", "/lib"]


def test_first_boot_of_a_release_is_its_trial():
    _clean()
    _trial()
    path = [""]
    p = otaboot.boot(path)
    assert path == ["/.ota/b", ""] and p["t"] == 2 and otaboot.pointer()["t"] == 2


def test_second_unconfirmed_boot_rolls_back():
    _clean()
    _trial()
    otaboot.boot([])
    path = [""]
    p = otaboot.boot(path)
    assert path == ["/.ota/a", ""], path
    assert (p["s"], p["r"], p["v"], p["rb"], p["hi"]) == ("a", 6, "6", 7, 7), p
    assert otaboot.pointer() == p
    assert otaboot.boot([]) == p  # stays there


def test_rollback_to_the_serial_install():
    _clean()
    trial = {"s": "a", "r": 1, "v": "1", "t": 2, "p": "", "pr": 0, "pv": ""}
    otaboot.save(dict(trial, hi=1, base=otaboot.mark()))
    path = [""]
    p = otaboot.boot(path)
    assert path == [""] and p["s"] == "" and p["rb"] == 1


def test_a_serial_deploy_since_wins_but_keeps_the_replay_guard():
    _clean()
    otaboot.save({"s": "a", "r": 4, "v": "4", "t": 0, "hi": 4, "base": "an older serial release"})
    path = [""]
    p = otaboot.boot(path)
    assert path == [""] and p == {"hi": 4, "base": otaboot.mark()}, p
    assert otaboot.boot([]) == p
    _clean()
