/** Routes under /hub/; the HSM, campaign and lead pages are separate chunks (route-level splitting). */
import { lazy, Suspense } from "react";
import { BrowserRouter, Navigate, Route, Routes } from "react-router-dom";
import { Layout } from "./components/Layout";
import { Loading } from "./components/States";
import { useSession } from "./session";
import { LeadsView } from "./views/LeadsView";
import { MarketingHubView } from "./views/MarketingHubView";

const MetaTemplatesView = lazy(() => import("./views/MetaTemplatesView").then((m) => ({ default: m.MetaTemplatesView })));
const CampaignView = lazy(() => import("./views/CampaignView").then((m) => ({ default: m.CampaignView })));
const LeadView = lazy(() => import("./views/LeadView").then((m) => ({ default: m.LeadView })));

function Landing() {
  const { canSeeMarketing } = useSession();
  return <Navigate to={canSeeMarketing ? "/marketing" : "/leads"} replace />;
}

export function AppRoutes() {
  return (
    <Suspense fallback={<Loading />}>
      <Routes>
        <Route element={<Layout />}>
          <Route index element={<Landing />} />
          <Route path="marketing" element={<MarketingHubView />} />
          <Route path="campaigns/:id" element={<CampaignView />} />
          <Route path="hsm" element={<MetaTemplatesView />} />
          <Route path="leads" element={<LeadsView />} />
          <Route path="leads/:id" element={<LeadView />} />
          <Route path="*" element={<Landing />} />
        </Route>
      </Routes>
    </Suspense>
  );
}

export function App() {
  return (
    <BrowserRouter basename="/hub">
      <AppRoutes />
    </BrowserRouter>
  );
}
