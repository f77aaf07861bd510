/** The typed client of /crm/marketing, /crm/auth/meta and the CRM API the hub uses. */
import { apiRequest } from "./client";
import type {
  AuthUrl, AutomationLog, AutomationRule, AutomationStats, CampaignDetail, CampaignInsights, CampaignPage,
  CampaignStatus, ConnectResult, HSMTemplate, Lead, MarketingStats, Me, MetaAdAccount, MetaPage, MetaPortfolio,
  MetaTokenStatus, Page, RoiDetails, TimeRange, TimeseriesPoint, WhatsAppChannel,
} from "../types/marketing";

export { formatCurrency, formatPercentage } from "../lib/format";

/** time_range=… or since=…&until=… */
export function rangeQuery(range: TimeRange): Record<string, string> {
  return "preset" in range ? { time_range: range.preset } : { since: range.since, until: range.until };
}

export interface CampaignListParams {
  range?: TimeRange;
  status?: CampaignStatus | "";
  ordering?: string;
  limit?: number;
  offset?: number;
}

export interface LogFilters {
  status?: string;
  trigger_type?: string;
  rule?: number | string;
  lead?: number | string;
  limit?: number;
  offset?: number;
}

const M = "/crm/marketing";

export const marketingApi = {
  getMe: () => apiRequest<Me>("/crm/me"),

  getStats: (range: TimeRange) => apiRequest<MarketingStats>(`${M}/stats`, { query: rangeQuery(range) }),
  getRoiDetails: (range: TimeRange) => apiRequest<RoiDetails>(`${M}/stats/roi`, { query: rangeQuery(range) }),
  getTimeseries: (range: TimeRange, campaignId?: string) =>
    apiRequest<TimeseriesPoint[]>(`${M}/stats/timeseries`, { query: { ...rangeQuery(range), campaign_id: campaignId } }),
  getCampaigns: ({ range, ...params }: CampaignListParams = {}) =>
    apiRequest<CampaignPage>(`${M}/campaigns`, { query: { ...(range ? rangeQuery(range) : {}), ...params } }),
  getCampaign: (id: string, range: TimeRange) =>
    apiRequest<CampaignDetail>(`${M}/campaigns/${encodeURIComponent(id)}`, { query: rangeQuery(range) }),
  getCampaignInsights: (id: string, range: TimeRange) =>
    apiRequest<CampaignInsights>(`${M}/campaigns/${encodeURIComponent(id)}/insights`, { query: rangeQuery(range) }),
  syncNow: () => apiRequest<{ task_id: string }>(`${M}/sync`, { method: "POST", body: {} }),

  getTokenStatus: () => apiRequest<MetaTokenStatus>(`${M}/token-status`),
  getMetaPortfolios: () => apiRequest<MetaPortfolio[]>(`${M}/meta-portfolios`),
  getMetaAccounts: (portfolioId?: string) =>
    apiRequest<MetaAdAccount[]>(`${M}/meta-accounts`, { query: { portfolio_id: portfolioId } }),
  connectMetaAccount: (accountId: string, accountName: string) =>
    apiRequest<ConnectResult>(`${M}/connect`, { method: "POST", body: { account_id: accountId, account_name: accountName } }),
  getMetaAuthUrl: () => apiRequest<AuthUrl>("/crm/auth/meta/url"),
  disconnectMeta: () => apiRequest<{ disconnected: boolean }>("/crm/auth/meta/disconnect", { method: "POST", body: {} }),

  getWhatsAppChannels: () => apiRequest<WhatsAppChannel[]>(`${M}/whatsapp-channels`),
  selectWhatsAppChannel: (phoneNumberId: string) =>
    apiRequest<WhatsAppChannel[]>(`${M}/whatsapp-channels`, { method: "POST", body: { phone_number_id: phoneNumberId } }),
  getMetaPages: () => apiRequest<MetaPage[]>(`${M}/meta-pages`),
  subscribeMetaPage: (pageId: string) =>
    apiRequest<MetaPage[]>(`${M}/meta-pages`, { method: "POST", body: { page_id: pageId } }),

  getHSMTemplates: (status?: string) => apiRequest<HSMTemplate[]>(`${M}/hsm/templates`, { query: { status } }),
  syncHSMTemplates: () => apiRequest<{ task_id: string }>(`${M}/hsm/templates/sync`, { method: "POST", body: {} }),
  getAutomationRules: () => apiRequest<AutomationRule[]>(`${M}/automation/rules`),
  setRuleActive: (id: number, isActive: boolean) =>
    apiRequest<AutomationRule>(`${M}/automation/rules/${id}`, { method: "PATCH", body: { is_active: isActive } }),
  getAutomationLogs: (filters: LogFilters = {}) =>
    apiRequest<Page<AutomationLog>>(`${M}/automation-logs`, { query: { ...filters } }),
  getAutomationStats: (range?: TimeRange) =>
    apiRequest<AutomationStats>(`${M}/automation/stats`, { query: range ? rangeQuery(range) : undefined }),

  getLeads: (params: { limit?: number; offset?: number; status?: string; lead_source?: string } = {}) =>
    apiRequest<Page<Lead>>("/crm/leads", { query: params }),
  getLead: (id: string | number) => apiRequest<Lead>(`/crm/leads/${encodeURIComponent(String(id))}`),
};

export type MarketingApi = typeof marketingApi;
