/** Response bodies shaped like the server's (DESIGN.md section 5). */
import type { AutomationLog, AutomationRule, CampaignStat, HSMTemplate, Lead, MarketingStats, MetaTokenStatus } from "../types/marketing";

export const stats: MarketingStats = {
  leads: 120, leads_change: 20.0, opportunities: 30, opportunities_change: -25.0,
  sales_revenue: 15000.5, revenue_change: 12.5, marketing_spend: 4000.0, spend_change: 5.0,
  roi_percentage: 275.0, roi_change: null, cpa: 400.0, cost_per_lead: 33.33,
  currency: "USD", currency_mismatch: false, unconverted_currencies: [],
  time_range: "last_30d", period: { since: "2026-10-31", until: "2026-11-29", complete: true },
  previous_period: { since: "2026-10-01", until: "2026-10-30", complete: true },
  meta_connected: true, last_synced_at: "2026-11-29T10:00:00Z",
};

export const campaign: CampaignStat = {
  id: "11", name: "Leads Q4 - Formulario", status: "ACTIVE", spend: 2500.0, impressions: 90000, clicks: 1800,
  leads: 80, opportunities: 20, revenue: 9000.0, roi: 260.0, cpa: 312.5, currency: "USD",
};

export const tokenStatus: MetaTokenStatus = {
  connected: true, needs_reconnect: false, expires_at: "2027-01-20T00:00:00Z", days_left: 52,
  scopes: ["ads_read"], business_managers: 1, ad_accounts: 2,
  ad_account: { id: "act_300001", name: "Acme - Leads AR", currency: "USD" },
};

export const template: HSMTemplate = {
  id: 5, name: "bienvenida_lead", category: "MARKETING", language: "es_AR", status: "APPROVED",
  components: [{ type: "BODY", text: "Hola {{1}}, gracias por escribirnos sobre {{2}}." }],
  quality_score: "GREEN", body_text: "Hola {{1}}, gracias por escribirnos sobre {{2}}.", variables_count: 2,
  sent_count: 10, delivered_count: 9, read_count: 4,
};

export const rule: AutomationRule = {
  id: 3, name: "Bienvenida a leads de Meta", trigger_type: "lead_created", conditions: { lead_sources: ["meta_lead_ads"] },
  is_active: true, quiet_hours: null, max_sends_per_lead_per_day: 3,
  steps: [{ order: 1, delay_minutes: 0, template: 5, variables: { "1": "lead.first_name", "2": "account.name" } }],
  sent_count: 10, delivered_count: 9, read_count: 4, failed_count: 1,
};

export function logRow(id: number, extra: Partial<AutomationLog> = {}): AutomationLog {
  return {
    id, lead_id: 40 + id, lead_name: `Lead ${id}`, rule_id: 3, rule_name: "Bienvenida a leads de Meta", trigger_type: "lead_created",
    template_name: "bienvenida_lead", status: "delivered", error_code: null, error_details: null,
    created_at: "2026-11-29T12:00:00Z", sent_at: "2026-11-29T12:00:01Z", delivered_at: "2026-11-29T12:00:05Z", read_at: null, ...extra,
  };
}

export const lead: Lead = {
  id: 9, first_name: "Carla", last_name: "Pérez", name: "Carla Pérez", phone: "+5491155550000", email: "carla@example.com",
  status: "new", lead_source: "meta_ctwa", meta_campaign_id: "120330000001", meta_adset_id: "120330000011",
  meta_ad_id: "120330000111", meta_form_id: "", meta_ad_headline: "Promo noviembre", meta_ad_body: "Escribinos por WhatsApp",
  ctwa_clid: "ARAkLk-clid", external_ids: {}, seller: 2, opted_out_at: null, last_inbound_at: null,
  created_at: "2026-11-28T15:00:00Z", updated_at: "2026-11-28T15:00:00Z",
};
