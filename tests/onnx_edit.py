"""Edits of exported ONNX artifacts for tests: break an artifact for real, then re-sign its manifest so
that only the parity gate (not the sha256 check) can catch the change."""

from __future__ import annotations

import json

import numpy as np

SKIP = ("schema", "artifact", "sha256", "size_bytes", "versions", "created")


def resign(art):
    """Rewrite the manifest of a modified artifact so only the parity gate can catch the change."""
    from edgernn.export.manifest import write_manifest

    m = json.loads(art.with_name(art.name + ".json").read_text())
    write_manifest(art, {k: v for k, v in m.items() if k not in SKIP})


def misscale_state(art, factor: float) -> None:
    """Multiply the step graph's state output h_out by `factor`: the state fed back is mis-scaled."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(art))
    g = model.graph
    for node in g.node:
        for i, name in enumerate(node.output):
            if name == "h_out":
                node.output[i] = "h_out_raw"
    g.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), "state_scale"))
    g.node.append(helper.make_node("Mul", ["h_out_raw", "state_scale"], ["h_out"]))
    onnx.save(model, str(art))
    resign(art)


