"""Quality assurance: audits of recordings, reports and (later) the reviewer console."""
