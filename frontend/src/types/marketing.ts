/** Shapes of the /crm API (DESIGN.md section 5). Money is a number with 2 decimals plus `currency`;
 * percentages are numbers with 1 decimal, null when undefined. */

export type PresetRange =
  | "7d" | "30d" | "90d" | "last_7d" | "last_30d" | "last_90d"
  | "this_month" | "last_month" | "this_year" | "lifetime";

/** A preset, or inclusive dates in the account timezone (YYYY-MM-DD). */
export type TimeRange = { preset: PresetRange } | { since: string; until: string };

export type CampaignStatus = "ACTIVE" | "PAUSED" | "DELETED" | "ARCHIVED";

export type Role = "ceo" | "admin" | "marketing" | "seller";

export interface Period {
  since: string;
  until: string;
  /** False while the period includes today: its figures still grow (the hub says "today so far"). */
  complete: boolean;
}

export interface CurrencyCheck {
  currency: string;
  currency_mismatch: boolean;
  unconverted_currencies: string[];
}

export interface MarketingStats extends CurrencyCheck {
  leads: number;
  leads_change: number | null;
  opportunities: number;
  opportunities_change: number | null;
  sales_revenue: number | null;
  revenue_change: number | null;
  marketing_spend: number | null;
  spend_change: number | null;
  roi_percentage: number | null;
  roi_change: number | null;
  cpa: number | null;
  cost_per_lead: number | null;
  time_range: string;
  period: Period;
  previous_period: Period;
  meta_connected: boolean;
  last_synced_at: string | null;
  connect_url?: string;
}

export interface CampaignStat {
  id: string;
  name: string;
  status: CampaignStatus;
  spend: number | null;
  impressions: number;
  clicks: number;
  leads: number;
  opportunities: number;
  revenue: number | null;
  roi: number | null;
  cpa: number | null;
  currency: string;
}

export interface RoiDetails extends CurrencyCheck {
  campaigns: CampaignStat[];
  time_period: string;
  period: Period;
  total_spend: number | null;
  total_revenue: number | null;
  average_roi: number | null;
}

export interface TimeseriesPoint {
  date: string;
  spend: number | null;
  leads: number;
  opportunities: number;
  revenue: number | null;
}

export interface Page<T> {
  results: T[];
  total: number;
  limit: number;
  offset: number;
}

export type CampaignPage = Page<CampaignStat> & Partial<Pick<CurrencyCheck, "currency_mismatch" | "unconverted_currencies">>;

export interface DayFigures {
  spend: number | null;
  impressions: number;
  clicks: number;
  leads: number;
  opportunities: number;
  revenue: number | null;
  cpa: number | null;
  cpc: number | null;
  cpm: number | null;
  ctr: number | null;
}

export interface CampaignDetail extends CurrencyCheck {
  id: string;
  name: string;
  objective: string;
  status: CampaignStatus;
  daily_budget: number | null;
  lifetime_budget: number | null;
  budget_currency?: string;
  start_time: string | null;
  end_time: string | null;
  performance: DayFigures & { roi_percentage: number | null };
  time_range: string;
  period: Period;
}

export interface CampaignInsights extends CurrencyCheck {
  id: string;
  name: string;
  insights: (DayFigures & { date: string })[];
  time_range: string;
  period: Period;
  attribution_window: string;
}

export interface MetaTokenStatus {
  connected: boolean;
  needs_reconnect: boolean;
  expires_at: string | null;
  days_left: number | null;
  scopes: string[];
  business_managers: number | null;
  ad_accounts: number | null;
  ad_account: { id: string; name: string; currency: string } | null;
  connect_url?: string;
}

export interface MetaPortfolio {
  id: string;
  name: string;
  ad_accounts_count: number;
}

export interface MetaAdAccount {
  id: string;
  name: string;
  currency: string;
  timezone: string;
  status: string;
}

export interface ConnectResult {
  connected: true;
  account_id: string;
  account_name: string;
  message: string;
}

export interface AuthUrl {
  auth_url: string;
  state: string;
  expires_in: number;
}

export interface WhatsAppChannel {
  id: number;
  waba_id: string;
  phone_number_id: string;
  display_phone_number: string;
  verified_name: string;
  quality_rating: string;
  messaging_limit_tier: string;
  throughput_mps: number;
  is_selected: boolean;
}

export interface MetaPage {
  id: number;
  page_id: string;
  name: string;
  is_subscribed: boolean;
}

export type TemplateStatus = "APPROVED" | "PENDING" | "REJECTED" | "PAUSED" | "DISABLED" | string;

export interface HSMTemplate {
  id: number;
  name: string;
  category: string;
  language: string;
  status: TemplateStatus;
  components: TemplateComponent[];
  quality_score: string | null;
  body_text: string;
  variables_count: number;
  sent_count: number;
  delivered_count: number;
  read_count: number;
}

export interface TemplateComponent {
  type: string;
  text?: string;
  format?: string;
  [key: string]: unknown;
}

export type TriggerType =
  | "lead_created" | "lead_status_changed" | "opportunity_created"
  | "opportunity_stage_changed" | "opportunity_won" | "no_reply";

export interface RuleStep {
  id?: number;
  order: number;
  delay_minutes: number;
  template: number | string;
  template_name?: string;
  variables: Record<string, string>;
}

export interface AutomationRule {
  id: number;
  name: string;
  trigger_type: TriggerType;
  conditions: {
    lead_sources?: string[];
    lead_statuses?: string[];
    campaign_ids?: string[];
    stages?: string[];
  };
  is_active: boolean;
  quiet_hours?: { start: string | null; end: string | null } | null;
  max_sends_per_lead_per_day: number;
  no_reply_hours?: number | null;
  steps: RuleStep[];
  sent_count?: number;
  delivered_count?: number;
  read_count?: number;
  failed_count?: number;
  flagged_reason?: string;
}

export type SendStatus = "queued" | "sending" | "unknown" | "sent" | "delivered" | "read" | "failed" | "skipped";

export interface AutomationLog {
  id: number;
  lead_id: number;
  lead_name: string;
  rule_id: number | null;
  rule_name: string;
  trigger_type: TriggerType;
  template_name: string;
  status: SendStatus;
  error_code: number | string | null;
  error_details: string | null;
  created_at: string;
  sent_at: string | null;
  delivered_at: string | null;
  read_at: string | null;
}

export interface AutomationStats {
  sends: number;
  delivered: number;
  read: number;
  failed: number;
  delivery_rate: number | null;
  read_rate: number | null;
  leads_followed_up: number;
  leads_uncontacted_24h: number;
  engine: "operational" | "idle" | "error";
}

export interface Membership {
  account_id: number;
  name: string;
  slug: string;
  role: Role;
  currency: string;
  timezone: string;
}

export interface Me {
  user: { id: number; username: string; name: string; email: string; is_staff: boolean };
  memberships: Membership[];
  account: Membership | null;
  language: string;
}

export type LeadSource = "organic" | "meta_lead_ads" | "meta_ctwa" | "manual" | "import";
export type LeadStatus = "new" | "contacted" | "qualified" | "converted" | "lost";

export interface Lead {
  id: number;
  first_name: string;
  last_name: string;
  name: string;
  phone: string | null;
  email: string;
  status: LeadStatus;
  lead_source: LeadSource;
  meta_campaign_id: string;
  meta_adset_id: string;
  meta_ad_id: string;
  meta_form_id: string;
  meta_ad_headline: string;
  meta_ad_body: string;
  ctwa_clid: string;
  external_ids: Record<string, unknown>;
  seller: number | null;
  opted_out_at: string | null;
  last_inbound_at: string | null;
  created_at: string;
  updated_at: string;
}
