"""The active-learning loop: a committee explores, its doubts are picked and labelled."""

from traincraft_assets.defs.loop.assets import candidates, committee, exploration, selected_frames

ASSETS = [committee, exploration, candidates, selected_frames]
