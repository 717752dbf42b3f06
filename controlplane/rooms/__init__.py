"""The video-conference network: sites, rooms, smart-work centres, bridges, their probes and bridge rooms."""
