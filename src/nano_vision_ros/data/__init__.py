"""Files the package ships (the WebRTC viewer page)."""
