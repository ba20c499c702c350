"""Sites that work offline and sync with a central workspace.

An edge site is an ordinary workspace: it decides, logs and reviews with no connection. When its exchange
folder is there (a shared folder, or a USB stick carried between an air-gapped site and the centre), ``sync``
takes models, criteria and class definitions down from the centre (model files checked against the centre's
signature) and sends labelled images, annotations, decided review items, predictions, drift summaries and
daily metrics up, as signed bundles (``bundle``). The centre applies them idempotently and resumably
(``central``); both ends log every bundle in ``sync_log``. ``peers`` holds who trusts whom.
"""

from inspectloop.sites.central import Applied, apply_up_bundle, publish_down, receive, state_digests
from inspectloop.sites.peers import SiteConfig, init_site, revoke_site, site_config, trust_site
from inspectloop.sites.site import SyncReport, sync
from inspectloop.sites.status import SyncStatus, sync_status

__all__ = ["Applied", "SiteConfig", "SyncReport", "apply_up_bundle", "init_site", "publish_down", "receive",
           "revoke_site", "site_config", "state_digests", "sync", "sync_status", "SyncStatus", "trust_site"]
