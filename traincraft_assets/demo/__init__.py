"""The demo's shipped parts: its run config and the demo foundation (foundation/)."""
