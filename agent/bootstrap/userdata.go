package bootstrap

import "github.com/spot-agent/spot-agent/userdata"

// RenderUserData renders the user-data with the userdata package: the same
// #cloud-config template the packages ship. It is the default Options.UserData.
func RenderUserData(spec UserDataSpec) ([]byte, error) {
	return userdata.Render(userdata.Config{
		Distribution: userdata.Distribution(spec.Distribution),
		PackageURL:   spec.AgentURL,
		Env:          spec.Env,
	})
}
