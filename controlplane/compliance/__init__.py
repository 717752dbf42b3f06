"""The remote-meeting compliance register: designated meetings, sessions, targets, shares, forecasts."""
