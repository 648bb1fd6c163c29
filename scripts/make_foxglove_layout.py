#!/usr/bin/env python3
"""Write config/foxglove_layout.json with foxglove-sdk's layout types (the app's own format).

    .venv/bin/python scripts/make_foxglove_layout.py [CAMERA]      # default cam0

Left: the camera (image_raw with the boxes, zones and violations as vector annotations; a second
tab: image_annotated as the RTMP stream shows it). Right: the event log and the diagnostics.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import foxglove.layouts as fl

cam = sys.argv[1] if len(sys.argv) > 1 else "cam0"


def image(topic: str, annotations: bool) -> fl.ImagePanel:
    mode = fl.ImageModeConfig(
        image_topic=f"/{cam}/{topic}",
        annotations={f"/{cam}/annotations": fl.ImageAnnotationSettings(visible=True)} if annotations else None,
    )
    return fl.ImagePanel(title=f"{cam}: {topic}", config=fl.ImageConfig(image_mode=mode))


layout = fl.Layout(
    content=fl.SplitContainer(
        direction="row",
        items=[
            fl.SplitItem(
                proportion=3,
                content=fl.TabContainer(
                    tabs=[
                        fl.TabItem(title=f"{cam} boxes + zones", content=image("image_raw", True)),
                        fl.TabItem(title=f"{cam} as streamed", content=image("image_annotated", False)),
                    ]
                ),
            ),
            fl.SplitItem(
                proportion=2,
                content=fl.SplitContainer(
                    direction="column",
                    items=[
                        fl.SplitItem(
                            proportion=2,
                            content=fl.LogPanel(title="events", config=fl.LogConfig(topic_to_render="/events_log")),
                        ),
                        fl.SplitItem(
                            proportion=1,
                            content=fl.DiagnosticsSummaryPanel(
                                title="diagnostics", config=fl.DiagnosticsSummaryConfig(topic_to_render="/diagnostics")
                            ),
                        ),
                    ],
                ),
            ),
        ],
    )
)
out = Path(__file__).resolve().parent.parent / "config/foxglove_layout.json"
out.write_text(json.dumps(json.loads(layout.to_json()), indent=2) + "\n")
print(f"wrote {out}")
