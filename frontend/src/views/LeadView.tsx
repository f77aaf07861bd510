/** /hub/leads/:id: the lead, the ad that brought it and its automation sends. */
import { ArrowLeft } from "lucide-react";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link, useParams } from "react-router-dom";
import { marketingApi } from "../api/marketing";
import { AdContextCard } from "../components/AdContextCard";
import { ErrorMessage, Loading } from "../components/States";
import { formatDateTime } from "../lib/format";
import { useFormat, useSession } from "../session";
import { SendLog } from "./MetaTemplatesView";

export function LeadView() {
  const { t } = useTranslation();
  const { id = "" } = useParams();
  const { canManage } = useSession();
  const { language, timeZone } = useFormat();
  const lead = useQuery({ queryKey: ["lead", id], queryFn: () => marketingApi.getLead(id) });
  return (
    <div className="page" data-testid="leadview-container">
      <Link to="/leads" className="back"><ArrowLeft size={14} aria-hidden="true" /> {t("leads.back")}</Link>
      {lead.isPending && <Loading label={t("leads.loadingOne")} />}
      {lead.isError && <ErrorMessage error={lead.error} />}
      {lead.data && (
        <>
          <header className="page-header">
            <div>
              <h1>{lead.data.name || `#${lead.data.id}`}</h1>
              <p className="muted">
                <span className={`badge lead-${lead.data.status}`}>{t(`leadStatus.${lead.data.status}`)}</span>{" "}
                {lead.data.phone ?? ""} {lead.data.email ? `· ${lead.data.email}` : ""}
              </p>
            </div>
          </header>
          <dl className="facts card">
            <div><dt>{t("leads.source")}</dt><dd>{t(`leadSource.${lead.data.lead_source}`)}</dd></div>
            <div><dt>{t("leads.created")}</dt><dd>{formatDateTime(lead.data.created_at, language, timeZone)}</dd></div>
            <div><dt>{t("leads.lastInbound")}</dt><dd>{formatDateTime(lead.data.last_inbound_at, language, timeZone)}</dd></div>
            <div><dt>{t("leads.optedOut")}</dt><dd>{lead.data.opted_out_at ? formatDateTime(lead.data.opted_out_at, language, timeZone) : t("common.no")}</dd></div>
          </dl>
          <AdContextCard lead={lead.data} />
          {canManage && <SendLog lead={lead.data.id} />}
        </>
      )}
    </div>
  );
}
