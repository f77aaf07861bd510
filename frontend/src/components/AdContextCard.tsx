/** The ad that brought a lead: source, campaign, ad set, ad, headline and body, from the lead's fields. */
import { Megaphone } from "lucide-react";
import { useTranslation } from "react-i18next";
import type { Lead } from "../types/marketing";

export function AdContextCard({ lead }: { lead: Lead }) {
  const { t } = useTranslation();
  const fromMeta = lead.lead_source === "meta_lead_ads" || lead.lead_source === "meta_ctwa";
  return (
    <section className="card" data-testid="adcontextcard-container" aria-labelledby="ad-context-title">
      <h2 id="ad-context-title"><Megaphone size={18} aria-hidden="true" /> {t("ad.title")}</h2>
      {!fromMeta ? (
        <p className="muted">{t("ad.notFromMeta", { source: t(`leadSource.${lead.lead_source}`) })}</p>
      ) : (
        <>
          <dl className="facts">
            <div><dt>{t("ad.source")}</dt><dd>{lead.lead_source === "meta_ctwa" ? t("ad.ctwa") : t("ad.leadAds")}</dd></div>
            <div><dt>{t("ad.campaign")}</dt><dd>{lead.meta_campaign_id || "—"}</dd></div>
            <div><dt>{t("ad.adset")}</dt><dd>{lead.meta_adset_id || "—"}</dd></div>
            <div><dt>{t("ad.ad")}</dt><dd>{lead.meta_ad_id || "—"}</dd></div>
            {lead.lead_source === "meta_lead_ads" && <div><dt>{t("ad.form")}</dt><dd>{lead.meta_form_id || "—"}</dd></div>}
            {lead.lead_source === "meta_ctwa" && <div><dt>{t("ad.ctwaClid")}</dt><dd className="mono">{lead.ctwa_clid || "—"}</dd></div>}
          </dl>
          {(lead.meta_ad_headline || lead.meta_ad_body) && (
            <blockquote className="ad-creative">
              {lead.meta_ad_headline && <p className="ad-headline">{lead.meta_ad_headline}</p>}
              {lead.meta_ad_body && <p>{lead.meta_ad_body}</p>}
            </blockquote>
          )}
        </>
      )}
    </section>
  );
}
