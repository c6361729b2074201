"""Cost of the node's DICOM outputs (SR, GSPS, overlay + SC) against the measurement they report.

Issue 17's target: writing and sending the results costs at most 25 % of the measure time.
``test_outputs_over_measure`` measures both in the same rounds, alternating (read + measure of a
640 × 800 phantom as the node does, then ``node.worker.write_results`` of SR, GSPS and SC with
the spool's fsync; also without the SC, whose overlay rendering and 3 MB of pixels cost the
most), and puts the medians and their ratio in ``extra_info``, so a loaded machine
shifts both alike. Run::

    nice -n 19 python -m pytest benchmarks/test_bench_outputs.py --benchmark-min-rounds=10
"""
from __future__ import annotations

import statistics
import time

import pytest



@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from cervisag_edge import Measurer
    from cervisag_edge.node.worker import measure_instance, read_instance
    from cervisag_edge.tooling.phantom import render_phantom, write_dicom

    tmp = tmp_path_factory.mktemp("outputs")
    src = write_dicom(render_phantom(0, 2, size=(640, 800)), tmp / "src.dcm")
    measurer = Measurer()
    image = read_instance(measurer, src)
    measurement = measure_instance(measurer, image)
    yield {"tmp": tmp, "src": src, "measurer": measurer, "image": image, "measurement": measurement}
    measurer.close()


@pytest.mark.benchmark(group="outputs")
def test_write_sr(benchmark, study) -> None:
    from cervisag_edge.outputs.dicom_out import write_structured_report

    sr = benchmark(write_structured_report, study["measurement"], study["tmp"] / "b.sr", study["image"].dataset)
    assert (study["tmp"] / "b.sr").stat().st_size > 10_000 and sr.SOPInstanceUID


@pytest.mark.benchmark(group="outputs")
def test_write_gsps(benchmark, study) -> None:
    from cervisag_edge.outputs.gsps import write_presentation_state

    pr = benchmark(write_presentation_state, study["measurement"], study["tmp"] / "b.gsps", study["image"].dataset)
    assert pr.SOPInstanceUID


@pytest.mark.benchmark(group="outputs")
def test_write_overlay_and_sc(benchmark, study) -> None:
    from cervisag_edge.outputs.dicom_out import write_secondary_capture
    from cervisag_edge.outputs.overlay import render_overlay

    def run():
        m = study["measurement"]
        return write_secondary_capture(render_overlay(study["image"].display, m), m, study["tmp"] / "b.sc", study["image"].dataset)

    assert benchmark(run).SOPInstanceUID


@pytest.mark.benchmark(group="outputs-ratio")
@pytest.mark.parametrize("outputs", [("sr", "gsps", "sc"), ("sr", "gsps")], ids=["sr-gsps-sc", "sr-gsps"])
def test_outputs_over_measure(benchmark, study, outputs) -> None:
    from cervisag_edge.node.spool import Spool
    from cervisag_edge.node.worker import measure_instance, read_instance, write_results

    spool = Spool(study["tmp"] / "spool")
    measure_ms: list[float] = []
    write_ms: list[float] = []

    def cycle() -> dict[str, str]:
        t0 = time.perf_counter()
        image = read_instance(study["measurer"], study["src"])
        measurement = measure_instance(study["measurer"], image)
        t1 = time.perf_counter()
        uids = write_results(spool, "k", measurement, image, outputs)
        t2 = time.perf_counter()
        measure_ms.append((t1 - t0) * 1000)
        write_ms.append((t2 - t1) * 1000)
        return uids

    uids = benchmark.pedantic(cycle, rounds=10, iterations=1, warmup_rounds=1)
    assert set(uids) == set(outputs)
    measured, written = measure_ms[1:] or measure_ms, write_ms[1:] or write_ms  # without the warm-up round
    med_measure, med_write = statistics.median(measured), statistics.median(written)
    benchmark.extra_info.update(measure_ms_median=round(med_measure, 2), write_ms_median=round(med_write, 2),
                                write_over_measure=round(med_write / med_measure, 3))
