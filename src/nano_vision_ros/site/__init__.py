"""A site's node graph: declared once (config/site.yaml + ``graph.build_graph``), run by
``launch/site.launch.py`` (launch_ros) or by ``nano-vision site`` (machines without launch_ros)."""
