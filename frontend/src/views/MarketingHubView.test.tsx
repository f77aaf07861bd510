import { act, fireEvent, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { campaign, stats, tokenStatus } from "../test/fixtures";
import { meFor, renderAt, stubApi } from "../test/render";
import { MarketingHubView } from "./MarketingHubView";

const page = (results = [campaign]) => ({ data: { results, total: results.length, limit: 25, offset: 0, currency_mismatch: false, unconverted_currencies: [] } });
const connectedApi = (overrides = {}) => ({
  "GET /crm/marketing/token-status": { data: tokenStatus },
  "GET /crm/marketing/stats": { data: stats },
  "GET /crm/marketing/stats/timeseries": { data: [] },
  "GET /crm/marketing/campaigns": page(),
  ...overrides,
});

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

function card(label: string) {
  return screen.getAllByTestId("marketingperformancecard-container").find((el) => el.getAttribute("aria-label") === label)!;
}

describe("MarketingHubView", () => {
  it("shows loading text, then the KPI cards with money, percentages, changes and a dash for undefined figures", async () => {
    stubApi(connectedApi());
    renderAt("/marketing", <MarketingHubView />, { language: "en" });

    expect(screen.getByText("Loading figures…")).toBeInTheDocument();
    await screen.findByText("$15,000.50");
    expect(within(card("Leads")).getByText("120")).toBeInTheDocument();
    expect(within(card("Leads")).getByText("+20%")).toBeInTheDocument();
    expect(within(card("Opportunities")).getByText("-25%")).toBeInTheDocument();
    expect(within(card("Ad spend")).getByText("$4,000.00")).toBeInTheDocument();
    expect(within(card("ROI")).getByText("275%")).toBeInTheDocument();
    expect(within(card("ROI")).getByText("—")).toBeInTheDocument(); // roi_change is null
    expect(within(card("Cost per lead")).getByText("$33.33")).toBeInTheDocument();
    // spend going up is shown as bad news, leads going up as good news
    expect(within(card("Ad spend")).getByText("+5%").closest("p")).toHaveClass("bad");
    expect(within(card("Leads")).getByText("+20%").closest("p")).toHaveClass("good");
    expect(within(card("Leads")).getByText("+20%").closest("p")).toHaveAttribute("title", "Against the previous period: Oct 1, 2026 – Oct 30, 2026");
  });

  it("shows the campaign table with a status badge and formatted figures", async () => {
    stubApi(connectedApi());
    renderAt("/marketing", <MarketingHubView />, { language: "en" });

    const row = (await screen.findByRole("link", { name: "Leads Q4 - Formulario" })).closest("tr")!;
    expect(within(row).getByText("Active")).toBeInTheDocument();
    expect(within(row).getByText("$2,500.00")).toBeInTheDocument();
    expect(within(row).getByText("260%")).toBeInTheDocument();
    expect(within(row).getByText("$312.50")).toBeInTheDocument();
  });

  it("keeps the range in the URL and asks the API for it", async () => {
    const calls = stubApi(connectedApi());
    renderAt("/marketing?time_range=90d", <MarketingHubView />, { language: "en" });

    await screen.findByText("$15,000.50");
    expect(calls.some((c) => c.url === "/crm/marketing/stats?time_range=90d")).toBe(true);
    expect(screen.getByLabelText("Period")).toHaveValue("90d");

    await userEvent.selectOptions(screen.getByLabelText("Period"), "7d");

    await waitFor(() => expect(calls.some((c) => c.url === "/crm/marketing/stats?time_range=7d")).toBe(true));
    expect(screen.getByLabelText("Period")).toHaveValue("7d");
  });

  it("asks for the last 30 complete days by default and says nothing about today", async () => {
    const calls = stubApi(connectedApi());
    renderAt("/marketing", <MarketingHubView />, { language: "en" });
    await screen.findByText("$15,000.50");
    expect(calls.some((c) => c.url === "/crm/marketing/stats?time_range=last_30d")).toBe(true);
    expect(screen.getByLabelText("Period")).toHaveDisplayValue("Last 30 complete days");
    expect(screen.queryByText(/Includes today so far/)).not.toBeInTheDocument();
  });

  it("labels a period that includes today as today so far, in Spanish too", async () => {
    const running = { ...stats, time_range: "30d", period: { ...stats.period, complete: false } };
    stubApi(connectedApi({ "GET /crm/marketing/stats": { data: running } }));
    renderAt("/marketing?time_range=30d", <MarketingHubView />, { language: "es" });
    expect(await screen.findByRole("note")).toHaveTextContent("Incluye hoy hasta ahora: las variaciones lo comparan con días completos");
    expect(screen.getByLabelText("Período")).toHaveDisplayValue("30 días con hoy hasta ahora");
  });

  it("sends custom dates as since and until", async () => {
    const calls = stubApi(connectedApi());
    renderAt("/marketing?since=2026-01-01&until=2026-01-31", <MarketingHubView />, { language: "en" });
    await screen.findByText("$15,000.50");
    expect(calls.some((c) => c.url === "/crm/marketing/stats?since=2026-01-01&until=2026-01-31")).toBe(true);
    expect(screen.getByLabelText("From")).toHaveValue("2026-01-01");
  });

  it("shows the API's error when the stats fail", async () => {
    stubApi(connectedApi({ "GET /crm/marketing/stats": { status: 400, error: { code: "invalid", message: "Bad range.", fields: { time_range: ["Allowed: 7d, 30d"] } } } }));
    renderAt("/marketing", <MarketingHubView />, { language: "en" });
    expect(await screen.findByRole("alert")).toHaveTextContent("Could not load. Bad range. time_range: Allowed: 7d, 30d");
  });

  it("says what to do when there are no campaigns in the range", async () => {
    stubApi(connectedApi({ "GET /crm/marketing/campaigns": page([]) }));
    renderAt("/marketing", <MarketingHubView />, { language: "en" });
    expect(await screen.findByText("No campaigns in this period")).toBeInTheDocument();
    expect(screen.getByText(/use “Sync now” and wait for it to finish/)).toBeInTheDocument();
  });

  it("notes a currency without an exchange rate", async () => {
    stubApi(connectedApi({ "GET /crm/marketing/stats": { data: { ...stats, currency_mismatch: true, unconverted_currencies: ["ARS"], roi_percentage: null } } }));
    renderAt("/marketing", <MarketingHubView />, { language: "en" });
    expect(await screen.findByRole("note")).toHaveTextContent("Some amounts are in ARS with no exchange rate to USD");
  });

  it("offers the ceo the connect button when Meta is not connected", async () => {
    stubApi({
      "GET /crm/marketing/token-status": { data: { ...tokenStatus, connected: false, ad_account: null, days_left: null } },
      "GET /crm/marketing/stats": { data: { ...stats, meta_connected: false, connect_url: "/crm/auth/meta/url" } },
    });
    renderAt("/marketing", <MarketingHubView />, { language: "en" });
    expect(await screen.findByText("Meta is not connected")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Connect with Meta" })).toBeInTheDocument();
    expect(screen.getByTestId("metaconnectionwizard-container")).toBeInTheDocument();
  });

  it("keeps the wizard open after the first ad account is picked, for the WhatsApp number and the Pages", async () => {
    let adAccount: typeof tokenStatus.ad_account = null;
    const json = (data: unknown) => new Response(JSON.stringify({ success: true, data, timestamp: "2026-11-29T12:00:00Z" }),
      { status: 200, headers: { "Content-Type": "application/json" } });
    stubApi(connectedApi({
      "GET /crm/marketing/token-status": () => json({ ...tokenStatus, ad_account: adAccount }),
      "GET /crm/marketing/meta-portfolios": { data: [{ id: "200001", name: "Acme Ventas BM", ad_accounts_count: 1 }] },
      "GET /crm/marketing/meta-accounts?portfolio_id=200001": { data: [{ id: "act_300001", name: "Acme - Leads AR", currency: "USD", timezone: "UTC", status: "ACTIVE" }] },
      "POST /crm/marketing/connect": () => {
        adAccount = tokenStatus.ad_account;
        return json({ connected: true, account_id: "act_300001", account_name: "Acme - Leads AR", message: "ok" });
      },
      "GET /crm/marketing/whatsapp-channels": { data: [] },
    }));
    renderAt("/marketing", <MarketingHubView />, { language: "en" });

    const wizard = await screen.findByTestId("metaconnectionwizard-container");
    fireEvent.click(await within(wizard).findByRole("radio", { name: /Acme Ventas BM/ }));
    fireEvent.click(within(wizard).getByRole("button", { name: "Next" }));
    fireEvent.click(await within(wizard).findByRole("radio", { name: /Acme - Leads AR/ }));
    fireEvent.click(within(wizard).getByRole("button", { name: "Use this ad account" }));

    expect(await screen.findByText("Pick the WhatsApp number that sends the messages")).toBeInTheDocument();
    await waitFor(() => expect(screen.getByText(/Acme - Leads AR/, { selector: "p" })).toBeInTheDocument()); // token-status says so now
    expect(screen.getByText("Pick the WhatsApp number that sends the messages")).toBeInTheDocument();
    await userEvent.selectOptions(screen.getByLabelText("Period"), "7d"); // another period's figures load meanwhile
    await waitFor(() => expect(within(card("Leads")).getByText("120")).toBeInTheDocument());
    expect(screen.getByText("Pick the WhatsApp number that sends the messages")).toBeInTheDocument(); // not back at the first step
  });

  it("shows a marketing user no connect or disconnect controls", async () => {
    stubApi(connectedApi({ "GET /crm/marketing/stats": { data: { ...stats, meta_connected: false } } }));
    renderAt("/marketing", <MarketingHubView />, { language: "en", me: meFor("marketing") });
    expect(await screen.findByText("Meta is not connected. Ask the CEO or an admin to connect it.")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Connect with Meta" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Disconnect" })).not.toBeInTheDocument();
  });

  it("tells a seller the hub is not for his role and asks the API nothing", async () => {
    const calls = stubApi(connectedApi());
    renderAt("/marketing", <MarketingHubView />, { language: "en", me: meFor("seller") });
    expect(screen.getByText("This section is not available for your role")).toBeInTheDocument();
    expect(calls).toEqual([]);
  });

  it("warns about a token that expires within 7 days and offers the ceo a reconnect", async () => {
    stubApi(connectedApi({ "GET /crm/marketing/token-status": { data: { ...tokenStatus, days_left: 3 } } }));
    renderAt("/marketing", <MarketingHubView />, { language: "en" });
    const banner = await screen.findByTestId("metatokenbanner-container");
    expect(banner).toHaveTextContent("Meta access expires in 3 days.");
    expect(within(banner).getByRole("button", { name: "Reconnect Meta" })).toBeInTheDocument();
  });

  it("explains a meta_error from the callback and removes it after 8 seconds", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    stubApi(connectedApi());
    renderAt("/marketing?meta_error=access_denied", <MarketingHubView />, { language: "en" });
    expect(screen.getByText(/The Meta dialog was cancelled/)).toBeInTheDocument();
    await act(async () => { vi.advanceTimersByTime(8000); });
    expect(screen.queryByText(/The Meta dialog was cancelled/)).not.toBeInTheDocument();
  });

  it("starts a sync, shows that figures are still changing, and follows a sync already running (409)", async () => {
    const calls = stubApi(connectedApi({ "POST /crm/marketing/sync": { status: 409, error: { code: "sync_in_progress", message: "A sync is running." } } }));
    renderAt("/marketing", <MarketingHubView />, { language: "en" });
    fireEvent.click(await screen.findByRole("button", { name: "Sync now" }));
    expect(await screen.findByText("Sync in progress: figures are still changing.")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Syncing…" })).toBeDisabled();
    expect(calls.find((c) => c.method === "POST")!.headers["X-Account"]).toBe("acme");
  });

  it("polls while a sync runs and drops the banner once the stats show the finished run", async () => {
    const routes: Record<string, unknown> = connectedApi({ "POST /crm/marketing/sync": { status: 202, data: { task_id: "abc" } } });
    stubApi(routes as Parameters<typeof stubApi>[0]);
    renderAt("/marketing", <MarketingHubView />, { language: "en" });
    fireEvent.click(await screen.findByRole("button", { name: "Sync now" }));
    expect(await screen.findByText("Sync in progress: figures are still changing.")).toBeInTheDocument();

    routes["GET /crm/marketing/stats"] = { data: { ...stats, leads: 121, last_synced_at: "2026-11-29T12:30:00Z" } };

    await waitFor(() => expect(screen.queryByText("Sync in progress: figures are still changing.")).not.toBeInTheDocument(), { timeout: 15_000 });
    expect(within(card("Leads")).getByText("121")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Sync now" })).toBeEnabled();
  });

  it("asks for confirmation before disconnecting Meta", async () => {
    const calls = stubApi(connectedApi({ "POST /crm/auth/meta/disconnect": { data: { disconnected: true } } }));
    renderAt("/marketing", <MarketingHubView />, { language: "en" });
    fireEvent.click(await screen.findByRole("button", { name: "Disconnect" }));
    expect(screen.getByText("Disconnect Meta? The token is deleted; the synced history is kept.", { exact: false })).toBeInTheDocument();
    expect(calls.some((c) => c.method === "POST")).toBe(false);
    fireEvent.click(screen.getByRole("button", { name: "Yes, disconnect" }));
    await waitFor(() => expect(calls.some((c) => c.url === "/crm/auth/meta/disconnect" && c.method === "POST")).toBe(true));
  });

  it("is in Spanish by default", async () => {
    stubApi(connectedApi());
    renderAt("/marketing", <MarketingHubView />);
    expect(await screen.findByText("Ingresos por ventas")).toBeInTheDocument();
    expect(screen.getByText("US$ 15.000,50")).toBeInTheDocument();
  });
});
