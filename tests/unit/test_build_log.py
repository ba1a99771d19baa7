"""Following a build's stream: the failing step and its output tail are what a user sees."""

from __future__ import annotations

from sieve_jupyter.build import BuildLog


def test_lines_are_split_across_chunks_and_steps_are_tracked() -> None:
    log = BuildLog()
    shown: list[str] = []
    for chunk in (
        {"stream": "Step 1/3 : FROM base\n"},
        {"stream": " ---> abc123\nStep 2/3 : RUN pip install nope-"},
        {"stream": "package\n"},
        {"stream": "ERROR: No matching distribution found for nope-package\n"},
    ):
        shown += log.feed(chunk)
    assert shown[-2] == "Step 2/3 : RUN pip install nope-package"
    assert log.step == "RUN pip install nope-package"
    assert log.tail == "ERROR: No matching distribution found for nope-package"


def test_an_error_chunk_records_the_message_and_keeps_the_failing_step() -> None:
    log = BuildLog()
    log.feed({"stream": "Step 4/9 : RUN apt-get install -y nosuch\n"})
    log.feed({"stream": "E: Unable to locate package nosuch\n"})
    lines = log.feed(
        {"errorDetail": {"code": 100, "message": "returned a non-zero code: 100"}, "error": "x"}
    )
    assert log.error == "x"
    assert lines[-1] == "ERROR: x"
    assert log.step == "RUN apt-get install -y nosuch"
    assert "Unable to locate package nosuch" in log.tail


def test_progress_redraws_keep_only_the_last_drawing_and_tail_is_bounded() -> None:
    log = BuildLog(tail_lines=3)
    log.feed({"stream": "Step 1/1 : RUN x\n"})
    log.feed({"stream": "10%\r50%\r100%\n"})
    for i in range(5):
        log.feed({"stream": f"line {i}\n"})
    assert log.tail == "line 2\nline 3\nline 4"
    assert log.feed({"stream": "unterminated"}) == []
    assert log.finish() == ["unterminated"]


def test_pull_status_chunks_become_readable_lines() -> None:
    log = BuildLog()
    assert log.feed({"status": "Pulling fs layer", "id": "a1b2"}) == ["a1b2: Pulling fs layer"]
    assert log.feed({"status": "Digest: sha256:..."}) == ["Digest: sha256:..."]
    assert log.feed({"aux": {"ID": "sha256:..."}}) == []


def _failed(*lines: str, step: str = "RUN pip install -r requirements.txt") -> BuildLog:
    log = BuildLog()
    log.feed({"stream": f"Step 3/7 : {step}\n"})
    for line in lines:
        log.feed({"stream": line + "\n"})
    log.feed({"error": "The command returned a non-zero code: 1"})
    return log


def test_the_engines_colours_are_kept_on_shown_lines_but_not_in_the_tail() -> None:
    log = BuildLog()
    log.feed({"stream": "Step 1/1 : RUN x\n"})
    assert log.feed({"stream": "\x1b[91mWARNING: retrying\n\x1b[0mdone\n"}) == [
        "\x1b[91mWARNING: retrying",
        "\x1b[0mdone",
    ]
    assert log.tail == "WARNING: retrying\ndone"


def test_a_certificate_failure_names_the_ca_bundle_setting() -> None:
    log = _failed(
        "WARNING: Retrying after connection broken by 'SSLError(SSLCertVerificationError(1, "
        "'[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate "
        "in certificate chain'))': /simple/cloudpickle/",
        "ERROR: No matching distribution found for cloudpickle==3.1.3",
    )
    error = log.failure("image env:1")
    assert "docker_ca_bundle" in str(error) and "SIEVE_DOCKER_CA_BUNDLE" in str(error)
    assert "python_packages" not in str(error)  # the certificate, not the package, is the cause
    assert str(error).startswith(
        "docker build of image env:1 failed at step `RUN pip install -r requirements.txt`: "
        "The command returned a non-zero code: 1."
    )
    assert error.step == "RUN pip install -r requirements.txt"
    assert "CERTIFICATE_VERIFY_FAILED" in error.log_tail


def test_apt_and_curl_certificate_failures_are_recognised_too() -> None:
    for line in (
        "Err:1 https://deb.example bookworm InRelease  Certificate verification failed: "
        "The certificate is NOT trusted.",
        "curl: (60) SSL certificate problem: self-signed certificate in certificate chain",
    ):
        assert "docker_ca_bundle" in _failed(line, step="RUN apt-get update").fix()


def test_an_unreachable_network_names_the_build_network_setting() -> None:
    log = _failed(
        "WARNING: Retrying after connection broken by 'NewConnectionError(... Failed to "
        "establish a new connection: [Errno -3] Temporary failure in name resolution')'",
        "ERROR: No matching distribution found for numpy",
    )
    assert "SIEVE_DOCKER_BUILD_NETWORK=host" in log.fix()


def test_a_missing_package_is_named_with_the_field_to_check() -> None:
    pip = _failed("ERROR: No matching distribution found for nosuchpkg==9.9")
    assert pip.fix().startswith("The package index has no release of nosuchpkg==9.9. Fix:")
    assert "python_packages" in pip.fix()
    apt = _failed("E: Unable to locate package libnosuch", step="RUN apt-get install -y x")
    assert "No apt package is called libnosuch" in apt.fix() and "system_packages" in apt.fix()


def test_an_unknown_failure_has_no_made_up_fix_and_a_given_fix_wins() -> None:
    log = _failed("Traceback (most recent call last):", "ValueError: boom")
    assert log.fix() == ""
    assert str(log.failure("image x")).split("\n")[0].endswith("non-zero code: 1.")
    assert "Fix: pull it" in str(log.failure("image x", "Fix: pull it"))


def test_the_images_own_explanation_is_the_fix() -> None:
    log = _failed(
        "Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]",
        "sieve: this distribution has no python3.13 package. Fix: use a base image that "
        "provides Python 3.13.",
        step="RUN sh /etc/sieve/install-python.sh 3.13",
    )
    assert log.fix() == (
        "This distribution has no python3.13 package. Fix: use a base image that provides "
        "Python 3.13."
    )
