import { fireEvent, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { renderAt, stubApi } from "../test/render";
import { MetaConnectionWizard } from "./MetaConnectionWizard";

afterEach(() => vi.unstubAllGlobals());

const accounts = [
  { id: "act_300001", name: "Acme - Leads AR", currency: "ARS", timezone: "America/Argentina/Buenos_Aires", status: "ACTIVE" },
  { id: "act_300002", name: "Acme - Legacy", currency: "USD", timezone: "America/New_York", status: "DISABLED" },
];

describe("MetaConnectionWizard", () => {
  it("walks portfolio -> ad account (disabled ones shown, not selectable) -> connect -> unavailable steps -> done", async () => {
    const calls = stubApi({
      "GET /crm/marketing/meta-portfolios": { data: [{ id: "200001", name: "Acme Holding", ad_accounts_count: 2 }] },
      "GET /crm/marketing/meta-accounts?portfolio_id=200001": { data: accounts },
      "POST /crm/marketing/connect": { data: { connected: true, account_id: "act_300001", account_name: "Acme - Leads AR", message: "ok" } },
    });
    renderAt("/marketing", <MetaConnectionWizard initialStep="portfolio" />, { language: "en" });

    fireEvent.click(await screen.findByRole("radio", { name: /Acme Holding/ }));
    expect(screen.getByText("2 ad accounts")).toBeInTheDocument();
    fireEvent.click(screen.getByRole("button", { name: "Next" }));

    const legacy = await screen.findByRole("radio", { name: /Acme - Legacy/ });
    expect(legacy).toBeDisabled();
    expect(screen.getByText("Disabled")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Use this ad account" })).toBeDisabled();
    fireEvent.click(screen.getByRole("radio", { name: /Acme - Leads AR/ }));
    fireEvent.click(screen.getByRole("button", { name: "Use this ad account" }));

    // The WhatsApp and Pages endpoints answer 404 on a server without them: the step says so, not an error.
    expect(await screen.findByText("This step is not available on this server yet.")).toBeInTheDocument();
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
    fireEvent.click(screen.getByRole("button", { name: "Skip" }));
    await screen.findByText("This step is not available on this server yet.");
    fireEvent.click(screen.getByRole("button", { name: "Skip" }));
    expect(await screen.findByText("Done: the first sync has started.")).toBeInTheDocument();
    expect(calls.find((c) => c.method === "POST")!.body).toEqual({ account_id: "act_300001", account_name: "Acme - Leads AR" });
  });

  it("lets the manager pick the WhatsApp number and subscribe a Page where the server has them", async () => {
    const channel = { id: 1, waba_id: "400001", phone_number_id: "500001", display_phone_number: "+54 9 11 5555-0000", verified_name: "Acme Ventas",
      quality_rating: "GREEN", messaging_limit_tier: "TIER_1K", throughput_mps: 80, is_selected: false };
    const calls = stubApi({
      "GET /crm/marketing/whatsapp-channels": { data: [channel] },
      "POST /crm/marketing/whatsapp-channels": { data: [{ ...channel, is_selected: true }] },
      "GET /crm/marketing/meta-pages": { data: [{ id: 1, page_id: "600001", name: "Acme Ventas AR", is_subscribed: false }] },
      "POST /crm/marketing/meta-pages": { data: [{ id: 1, page_id: "600001", name: "Acme Ventas AR", is_subscribed: true }] },
    });
    renderAt("/marketing", <MetaConnectionWizard initialStep="whatsapp" />, { language: "en" });

    fireEvent.click(await screen.findByRole("radio", { name: /\+54 9 11 5555-0000/ }));
    await waitFor(() => expect(screen.getByRole("radio", { name: /\+54 9 11 5555-0000/ })).toBeChecked());
    fireEvent.click(screen.getByRole("button", { name: "Next" }));
    fireEvent.click(await screen.findByRole("button", { name: "Subscribe" }));
    expect(await screen.findByText("Subscribed")).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "POST").map((c) => c.body)).toEqual([{ phone_number_id: "500001" }, { page_id: "600001" }]);
  });

  it("shows the error of a failed connect", async () => {
    stubApi({
      "GET /crm/marketing/meta-accounts": { data: accounts },
      "POST /crm/marketing/connect": { status: 400, error: { code: "invalid", message: "Invalid input.", fields: { account_id: ["Meta does not show this ad account to the connected user."] } } },
    });
    renderAt("/marketing", <MetaConnectionWizard initialStep="adaccount" />, { language: "en" });
    fireEvent.click(await screen.findByRole("radio", { name: /Acme - Leads AR/ }));
    fireEvent.click(screen.getByRole("button", { name: "Use this ad account" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("account_id: Meta does not show this ad account to the connected user.");
  });
});
