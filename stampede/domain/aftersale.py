"""The meta fields of a campaign's after-sale parts: refunds, tickets, transfers, grants."""

from stampede.domain.models import CampaignSpec


def aftersale_meta(spec: CampaignSpec) -> dict[str, str]:
    """The meta fields the after-sale scripts read (define_campaign writes them)."""
    refunds = spec.refunds
    window = -1 if refunds is None or refunds.buyer_window_s is None \
        else refunds.buyer_window_s * 1000
    meta = {"rf_to": refunds.units_to if refunds is not None else "restock",
            "rf_window_ms": str(window)}
    if spec.tickets is not None:
        meta |= {"tk_on": "1", "tk_venue": spec.tickets.venue}
    if spec.on_checkin is not None:
        meta |= {"oc_drop": spec.on_checkin.drop, "oc_sku": spec.on_checkin.sku}
    if spec.on_confirm is not None:
        meta |= {"ocf_drop": spec.on_confirm.drop, "ocf_sku": spec.on_confirm.sku}
    if spec.transfers is not None:
        meta |= {"xf_on": "1", "xf_ttl_ms": str(spec.transfers.offer_ttl_s * 1000),
                 "xf_limits": "1" if spec.transfers.recipient_limits else "0"}
    return meta
