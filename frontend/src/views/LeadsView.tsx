/** /hub/leads: the account's leads (a seller sees his own: the server scopes them), paged. */
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link, useSearchParams } from "react-router-dom";
import { marketingApi } from "../api/marketing";
import { Empty, ErrorMessage, Loading } from "../components/States";
import { formatDateTime } from "../lib/format";
import { useFormat, useSession } from "../session";

const PAGE = 50;
const STATUSES = ["new", "contacted", "qualified", "converted", "lost"];

export function LeadsView() {
  const { t } = useTranslation();
  const { membership } = useSession();
  const { language, timeZone } = useFormat();
  const [params, setParams] = useSearchParams();
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const status = params.get("status") ?? "";
  const leads = useQuery({
    queryKey: ["leads", offset, status],
    queryFn: () => marketingApi.getLeads({ limit: PAGE, offset, status: status || undefined }),
    placeholderData: keepPreviousData,
  });
  function go(next: Record<string, string>) {
    setParams((current) => {
      const updated = new URLSearchParams(current);
      for (const [key, value] of Object.entries(next)) if (value) updated.set(key, value); else updated.delete(key);
      return updated;
    });
  }
  const page = leads.data;
  return (
    <div className="page" data-testid="leadsview-container">
      <header className="page-header">
        <div>
          <h1>{t("leads.title")}</h1>
          <p className="muted">{membership?.role === "seller" ? t("leads.yours") : t("leads.all")}</p>
        </div>
        <label className="inline">{t("leads.status")}
          <select value={status} onChange={(e) => go({ status: e.target.value, offset: "" })}>
            <option value="">{t("log.all")}</option>
            {STATUSES.map((s) => <option key={s} value={s}>{t(`leadStatus.${s}`)}</option>)}
          </select>
        </label>
      </header>
      <section className="card">
        {leads.isPending && <Loading label={t("leads.loading")} />}
        {leads.isError && <ErrorMessage error={leads.error} onRetry={() => leads.refetch()} />}
        {page && page.total === 0 && <Empty title={t("leads.emptyTitle")}>{t("leads.emptyBody")}</Empty>}
        {page && page.total > 0 && (
          <>
            <div className="table-wrap">
              <table className="data-table" id="leads-table">
                <thead>
                  <tr>
                    <th scope="col">{t("leads.name")}</th>
                    <th scope="col">{t("leads.phone")}</th>
                    <th scope="col">{t("leads.status")}</th>
                    <th scope="col">{t("leads.source")}</th>
                    <th scope="col">{t("leads.created")}</th>
                  </tr>
                </thead>
                <tbody>
                  {page.results.map((lead) => (
                    <tr key={lead.id}>
                      <th scope="row"><Link to={`/leads/${lead.id}`}>{lead.name || `#${lead.id}`}</Link></th>
                      <td>{lead.phone ?? "—"}</td>
                      <td><span className={`badge lead-${lead.status}`}>{t(`leadStatus.${lead.status}`)}</span></td>
                      <td>{t(`leadSource.${lead.lead_source}`)}</td>
                      <td>{formatDateTime(lead.created_at, language, timeZone)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <div className="pager">
              <span>{t("campaigns.showing", { first: page.offset + 1, last: page.offset + page.results.length, total: page.total })}</span>
              <button type="button" className="button secondary small" disabled={offset === 0}
                onClick={() => go({ offset: String(Math.max(0, offset - PAGE)) })}>{t("common.previous")}</button>
              <button type="button" className="button secondary small" disabled={page.offset + page.results.length >= page.total}
                onClick={() => go({ offset: String(offset + PAGE) })}>{t("common.next")}</button>
            </div>
          </>
        )}
      </section>
    </div>
  );
}
